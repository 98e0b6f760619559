"""The Celery app factory: every process builds its app here from explicit settings.

The project's configuration comes first; then the operator's Celery configuration module, if
``CELERY_CONFIG_MODULE`` names one (Celery's own name for it): its lowercase Celery settings
(``broker_pool_limit``, ``worker_prefetch_multiplier``, ...) override the
project's, except those the security model or the wiring depends on (``PROTECTED``), which
refuse to start with an error naming the setting.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping

from celery import Celery
from celery.app.defaults import DEFAULTS
from kombu import Exchange, Queue

from oodida_core.messaging import kombu_guard, remote_control
from oodida_core.messaging.labels import LabellingAMQP
from oodida_core.messaging.routing import route_task
from oodida_core.protocol.errors import BadArgument
from oodida_core.protocol.keys import CLOUD_QUEUE
from oodida_core.settings import Settings

CONFIG_MODULE_VAR = "CELERY_CONFIG_MODULE"

# What an operator's module may not set, and why.
_URLS = "the Redis URL of each role comes from OODIDA_REDIS_URL (each role its own ACL user)"
_JSON = "JSON only: any other serializer would run what a publisher sends (envelope.py admits JSON only)"
_ROUTES = "one router sends each task to its queue (oodida_core/messaging/routing.py)"
PROTECTED: Mapping[str, str] = {
    "broker_url": _URLS,
    "broker_read_url": _URLS,
    "broker_write_url": _URLS,
    "result_backend": _URLS,
    "broker_transport_options": "the edges' ACL depends on it (no ack emulation on edges); "
    "the visibility timeout is OODIDA_VISIBILITY_TIMEOUT",
    "task_serializer": _JSON,
    "result_serializer": _JSON,
    "event_serializer": _JSON,
    "accept_content": _JSON,
    "result_accept_content": _JSON,
    "result_extended": "it would store every task's arguments (a request's token) in the result backend",
    "worker_consumer": (
        "every message Celery cannot take is logged and deleted (oodida_core/messaging/guard.py)"
    ),
    "task_routes": _ROUTES,
    "task_queues": _ROUTES,
    "task_default_queue": _ROUTES,
    "task_create_missing_queues": _ROUTES + "; client queues are created as they are first used",
    "broker_use_ssl": "TLS comes from the rediss:// URL (ssl_cert_reqs=required, ssl_ca_certs): "
    "settings.check_tls refuses options that would not verify the server",
    "redis_backend_use_ssl": "TLS comes from the rediss:// URL (ssl_cert_reqs=required, ssl_ca_certs): "
    "settings.check_tls refuses options that would not verify the server",
    "task_protocol": "protocol 2 only: the labeller that keeps a request's token out of task "
    "events and Flower builds protocol 2 messages (oodida_core/messaging/labels.py)",
}


def operator_config(module_name: str) -> dict[str, object]:
    """The Celery settings of the operator's module ``module_name``: its public lowercase names
    (modules, classes and functions it holds are not settings); BadArgument for a module that
    does not import, a name that is not a Celery setting, or a ``PROTECTED`` one."""
    where = f"{CONFIG_MODULE_VAR}={module_name}"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise BadArgument(f"{where}: cannot import it: {type(exc).__name__}: {exc}") from None
    found = {
        name: value
        for name, value in vars(module).items()
        if name.islower()
        and not name.startswith("_")
        and not (inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value))
    }
    protected = sorted(name for name in found if name in PROTECTED)
    if protected:
        reasons = "; ".join(f"{name}: {PROTECTED[name]}" for name in protected)
        raise BadArgument(f"{where}: may not set {', '.join(protected)} ({reasons})")
    unknown = sorted(name for name in found if name not in DEFAULTS)
    if unknown:
        raise BadArgument(f"{where}: not Celery settings: {', '.join(unknown)}")
    return found


def make_celery_app(
    settings: Settings,
    name: str = "oodida",
    *,
    edge: bool = False,
    guarded: bool = True,
    config_module: str | None = None,
) -> Celery:
    """A Celery app on ``settings.redis_url`` with the project's configuration, then the
    operator's (``config_module``, by default ``$CELERY_CONFIG_MODULE``; ``operator_config``).
    Building it connects to nothing.

    Every task goes where ``routing.route_task`` sends it, labelled by ``LabellingAMQP``
    (tasklabels.py): publishers name neither the queue nor the labels.

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
        amqp=LabellingAMQP,
        set_as_current=False,
    )
    app.conf.update(
        # JSON only, in and out.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # One URL for each role's ACL user: settings.redis_url.
        broker_read_url=None,
        broker_write_url=None,
        # TLS from the rediss:// URL alone (ssl_cert_reqs, ssl_ca_certs, ...: settings.check_tls).
        broker_use_ssl=None,
        redis_backend_use_ssl=None,
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
        task_queues=None,  # Celery's: the default queue (the library and the edges name theirs)
        task_routes=(route_task,),
        task_protocol=2,
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Every task message is checked before Celery reads it: a malformed one is logged and
        # deleted instead of stopping the worker (oodida_core/messaging/guard.py).
        enable_utc=True,
    )
    # Celery's loader reads $CELERY_CONFIG_MODULE too, under what is set here: every PROTECTED
    # setting is set above, so that reading cannot change one.
    module = os.environ.get(CONFIG_MODULE_VAR) if config_module is None else config_module
    if module:
        app.conf.update(operator_config(module))
    if guarded:
        app.conf.worker_consumer = "oodida_core.messaging.guard:GuardedConsumer"
    if edge:
        app.conf.task_queues = [
            Queue(CLOUD_QUEUE, Exchange(CLOUD_QUEUE), routing_key=CLOUD_QUEUE, no_declare=True)
        ]
    if guarded:
        remote_control.install(app)
    return app
