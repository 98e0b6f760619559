"""The Celery app factory: every process builds its app here from explicit settings."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from . import kombu_guard, remote_control
from .keys import CLOUD_QUEUE
from .settings import Settings


def make_celery_app(
    settings: Settings, name: str = "oodida", *, edge: bool = False, guarded: bool = True
) -> Celery:
    """A Celery app on ``settings.redis_url`` with the project's fixed configuration.

    An ``edge`` (a vehicle's worker) holds only its own vehicle's credentials (acl.py), so it
    touches nothing that every worker shares: it takes its tasks without kombu's ack emulation
    (no ``unacked`` hash holding every queue's messages in flight). A task taken by an edge
    that dies is lost; its iteration counts it as missing at the deadline, and an install stays
    on the client's pending list. Nor does it declare the ``cloud`` queue when it sends a
    chord's callback there (the cloud worker does): it only reads that queue's binding, and may
    not add one (on Redis 7, where reading is not writing).

    Every worker, edge or cloud, listens to remote control so that Flower lists it, but
    answers only inspection (remote_control.py): no ``shutdown``, ``revoke``,
    ``pool_restart`` or ``add_consumer`` from anyone changes a worker.

    ``guarded=False`` (the benchmarks' bare Celery baseline only) leaves out what guards the
    workers: the check of every queue item (kombu_guard, envelope.py), the guarded consumer and
    the inspection-only remote control; the rest of the configuration is the same.
    """
    if guarded:
        kombu_guard.install()  # checks every queue item; workers survive a Redis restart
    app = Celery(
        name,
        broker=settings.redis_url,
        backend=settings.redis_url,
        set_as_current=False,
    )
    app.conf.update(
        # JSON only, in and out.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Flower sees everything: events from workers and from every publisher.
        worker_send_task_events=settings.events,
        task_send_sent_event=settings.events,
        # At-least-once: ack after the task ran, take one message at a time.
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        # One BRPOP per poll, not one per priority step; redelivery only long after deadlines.
        broker_transport_options={
            "priority_steps": [0],
            "visibility_timeout": settings.visibility_timeout,
            **({"ack_emulation": False} if edge else {}),
        },
        worker_enable_remote_control=True,
        result_backend_transport_options={"retry_policy": {"timeout": 5.0}},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # Results outlive any iteration; chord results come back in header order.
        result_expires=settings.result_expires,
        result_chord_ordered=True,
        result_extended=False,
        task_default_queue=CLOUD_QUEUE,
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Every task message is checked before Celery reads it: a malformed one is logged and
        # deleted instead of stopping the worker (oodida_core/guard.py).
        enable_utc=True,
    )
    if guarded:
        app.conf.worker_consumer = "oodida_core.guard:GuardedConsumer"
    if edge:
        app.conf.task_queues = [
            Queue(CLOUD_QUEUE, Exchange(CLOUD_QUEUE), routing_key=CLOUD_QUEUE, no_declare=True)
        ]
    if guarded:
        remote_control.install(app)
    return app
