"""The bare Celery baseline of ``bench_core.py``: a no-op task per client queue and a chord callback.

The app is built by the project's own ``make_celery_app`` so that it runs with exactly the same
settings (serialisers, acks, prefetch, events, transport options) as OODIDA. A worker is started
as ``python benchmarks/bare_app.py --redis-url URL --queues client.1,client.2 --concurrency 2``;
when it is ready it adds its name to the Redis set ``READY_KEY`` so the benchmark knows.
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

import redis
from celery import Celery, signals

from oodida_core.celery_app import make_celery_app
from oodida_core.settings import Settings

READY_KEY = "bench:ready"


def make_app(redis_url: str) -> Celery:
    app = make_celery_app(Settings.from_env(redis_url=redis_url), "bench-bare")

    @app.task(name="bench.noop", acks_late=True, shared=False)
    def noop() -> None:
        return None

    @app.task(name="bench.done", acks_late=True, shared=False)
    def done(results: list[Any]) -> int:
        return len(results)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queues", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--loglevel", default="WARNING")
    args = parser.parse_args(argv)
    app = make_app(args.redis_url)
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
