"""``oodida-cloud``: a Celery worker on the ``cloud`` queue, plus its deadline watcher."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
from typing import Any

import redis
from celery import signals
from celery._state import _set_task_join_will_block

from oodida_core.customcode.sandbox import announce_jail
from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.keys import CLOUD_QUEUE
from oodida_core.protocol.logs import setup_logging
from oodida_core.settings import Settings

from .bootsteps import DeadlineWatcher
from .root import build_cloud
from .tasks import register_cloud_tasks

log = logging.getLogger("oodida.cloud")


def _without_password(url: str) -> str:
    """The URL as logs show it: a password in it becomes ***."""
    head, sep, tail = url.rpartition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, cred = head.partition("//")
    return f"{scheme}//{cred.split(':', 1)[0]}:***@{tail}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oodida-cloud", description=__doc__)
    parser.add_argument("--redis-url", help="broker URL (default: $OODIDA_REDIS_URL)")
    parser.add_argument("--concurrency", type=int, help="threads (default: $OODIDA_CLOUD_CONCURRENCY or 4)")
    parser.add_argument(
        "--name",
        help="worker name (default: cloud-<pid>-<6 random hex digits>: unique also among containers on "
        "one host, whose processes may have the same pid)",
    )
    parser.add_argument("--loglevel", default=os.environ.get("OODIDA_LOGLEVEL", "INFO"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    settings = Settings.from_env(redis_url=args.redis_url, cloud_concurrency=args.concurrency)
    setup_logging(args.loglevel)
    app = make_celery_app(settings, "oodida-cloud")
    client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
    cloud = build_cloud(app, client, settings)
    sandbox = cloud.sandbox
    announce_jail(sandbox, log)
    register_cloud_tasks(app, cloud.dispatcher, cloud.routes)
    name = args.name or f"cloud-{os.getpid()}-{secrets.token_hex(3)}"
    # Registered under its Celery node name, as Flower shows it (`oodida health --cloud` looks
    # for this host's).
    node = f"{name}@{socket.gethostname()}"
    app.steps["worker"].add(DeadlineWatcher.for_worker(cloud.orchestrator, cloud.purger, node))

    def on_ready(**_: Any) -> None:
        # The cloud publishes chords and never waits on their results: without this, the
        # threads pool would SUBSCRIBE to every header task's result channel.
        _set_task_join_will_block(True)
        log.info(
            "cloud worker %s ready on %s (authentication %s)",
            node,
            _without_password(settings.redis_url),
            "on" if settings.auth else "OFF",
        )

    def on_shutdown(**_: Any) -> None:
        sandbox.close()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    app.worker_main(
        [
            "worker",
            "--queues",
            CLOUD_QUEUE,
            "--pool",
            "threads",
            "--concurrency",
            str(settings.cloud_concurrency),
            "--hostname",
            node,
            "--loglevel",
            args.loglevel,
            "--without-mingle",
            "--without-gossip",
        ]
    )


if __name__ == "__main__":
    main()
