"""The bare Celery baselines of ``bench_core.py``: a no-op task per client queue and a chord callback.

``bench.noop`` and ``bench.done`` are the chord the caller publishes itself ("bare"). ``bench.start``
is the extra hop ("bare+hop"): the caller sends it to the ``cloud`` queue, and the cloud worker
that runs it publishes that same chord, with the callback under a task id the caller chose, as
OODIDA's cloud does for an assignment; the caller then waits on that callback's result.

The app is built by the project's own ``make_celery_app`` so that it runs with exactly the same
settings (serialisers, acks, prefetch, events, transport options) as OODIDA, without OODIDA's
guards (``guarded=False``: the queue-item check, which refuses tasks that are not OODIDA's on
these queue names, and the inspection-only remote control); their cost counts as ours. A worker is started
as ``python benchmarks/bare_app.py --redis-url URL --queues client.1,client.2 --concurrency 2``;
when it is ready it adds its name to the Redis set ``READY_KEY`` so the benchmark knows.
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

import redis
from celery import Celery, chord, signals

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.keys import CLOUD_QUEUE, client_queue
from oodida_core.settings import Settings

READY_KEY = "bench:ready"


def make_app(redis_url: str, stock: bool = False) -> Celery:
    settings = Settings.from_env(redis_url=redis_url)
    app = make_celery_app(settings, "bench-bare", guarded=False)
    if stock:
        # Celery's own transport defaults (priority_steps [0, 3, 6, 9]: every BRPOP names each
        # consumed queue four times), as a worker a user starts without tuning would run.
        app.conf.broker_transport_options = {"visibility_timeout": settings.visibility_timeout}

    @app.task(name="bench.noop", acks_late=True, shared=False)
    def noop() -> None:
        return None

    @app.task(name="bench.done", acks_late=True, shared=False)
    def done(results: list[Any]) -> int:
        return len(results)

    @app.task(name="bench.start", acks_late=True, ignore_result=True, shared=False)
    def start(n: int, callback_id: str) -> None:
        # Plain Celery, as a user would write it: one publish (and task-sent event) per header
        # task, and the GroupResult that chord() builds subscribes this worker to every header
        # task's result channel. OODIDA's cloud does neither (oodida_cloud/dispatch.py).
        header = [noop.s().set(queue=client_queue(i)) for i in range(1, n + 1)]
        chord(header)(done.s().set(queue=CLOUD_QUEUE, task_id=callback_id))

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queues", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--loglevel", default="WARNING")
    parser.add_argument("--stock", action="store_true", help="Celery's default transport options")
    args = parser.parse_args(argv)
    app = make_app(args.redis_url, stock=args.stock)
    name = f"{args.name}@{socket.gethostname()}"

    def on_ready(**_: Any) -> None:
        client = redis.Redis.from_url(args.redis_url)
        client.sadd(READY_KEY, name)
        client.close()

    signals.worker_ready.connect(on_ready, weak=False)
    # The same flags as oodida_edge / oodida_cloud start their workers with.
    app.worker_main(
        [
            "worker",
            "--queues",
            args.queues,
            "--pool",
            args.pool,
            "--concurrency",
            str(args.concurrency),
            "--hostname",
            name,
            "--loglevel",
            args.loglevel,
            "--without-mingle",
            "--without-gossip",
        ]
    )


if __name__ == "__main__":
    main()
