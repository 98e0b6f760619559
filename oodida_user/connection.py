"""The analyst library's composition root: what one ``Oodida`` connects to and reads through.

``analyst_settings`` checks what the analyst gave (broker URL, user, token) over the
environment's settings; ``Connection.open`` builds everything else from those settings, once:
the Redis client (pinged, so an unreachable broker is an error at once), the stores it reads
through, and the Celery app that publishes the requests. Nothing here writes to Redis: the
library reads, and changes things only by asking the cloud (``requests.CloudRequests``). The
sandbox of the local dry run is not built here: the deploy path builds it at its first check
(``deploy.LocalCheck``).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from kombu import Exchange, Queue
from pydantic import ValidationError

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.errors import BadArgument, OodidaError
from oodida_core.protocol.keys import CLOUD_QUEUE, Keys
from oodida_core.security.auth import check_user_name
from oodida_core.settings import Settings, masked_url
from oodida_core.state.codestore import CodeStore
from oodida_core.state.registry import Registry
from oodida_core.state.store import AssignmentStore

from ._args import POLL_MS


def analyst_settings(
    url: str | None, user: str | None, token: str | None, settings: Settings | None
) -> Settings:
    """``settings`` (the environment's by default) with what the call gave, validated (the
    broker URL too, not merely copied): BadArgument for a bad value, OodidaError for no user or
    a user name that cannot exist."""
    base = settings or Settings.from_env()
    given = (("redis_url", url), ("user", user), ("token", token))
    try:
        checked = Settings.model_validate({**dict(base), **{k: v for k, v in given if v}})
    except ValidationError as exc:
        problems = (str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise BadArgument("; ".join(problems)) from None
    if not checked.user:
        raise OodidaError("no user given: pass user=... or set OODIDA_USER")
    check_user_name(checked.user)
    return checked


def read_client(settings: Settings) -> redis.Redis:
    """The library's Redis client, pinged. With ACLs it reads through a read-only user
    (``read_url``); the Celery app publishes as the analyst role (``redis_url``)."""
    url = settings.read_url or settings.redis_url
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=5,
            socket_timeout=POLL_MS / 1000 + 10,
            health_check_interval=30,
        )
    except (ValueError, TypeError) as exc:
        raise BadArgument(f"{url!r:.80} is not a Redis URL: {exc}") from None
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        client.close()
        raise OodidaError(
            f"cannot reach the OODIDA broker at {masked_url(settings.redis_url)}: {exc}"
        ) from None
    return client


def publisher(settings: Settings) -> Celery:
    """The Celery app that publishes the analyst's requests to the ``cloud`` queue."""
    app = make_celery_app(settings, "oodida-user")
    # Requests go to `cloud` by name; declaring it would add to kombu's binding sets, which
    # the analyst role may not write (nothing would bound what it stores there).
    app.conf.task_queues = [
        Queue(CLOUD_QUEUE, Exchange(CLOUD_QUEUE), routing_key=CLOUD_QUEUE, no_declare=True)
    ]
    return app


@dataclass(frozen=True)
class Connection:
    """One analyst's connection: settings, the Redis client, the stores read through it and
    the Celery app. ``open`` builds it; ``close`` releases the app and the client."""

    settings: Settings
    redis: redis.Redis
    keys: Keys
    store: AssignmentStore
    registry: Registry
    codestore: CodeStore
    app: Celery

    @classmethod
    def open(cls, settings: Settings) -> Connection:
        """Everything built from ``settings``; OodidaError when the broker does not answer."""
        client = read_client(settings)
        keys = Keys(settings.key_prefix)
        return cls(
            settings=settings,
            redis=client,
            keys=keys,
            store=AssignmentStore(client, keys, ttl=settings.assignment_ttl),
            registry=Registry(client, settings),
            codestore=CodeStore(client, keys, ttl=settings.assignment_ttl),
            app=publisher(settings),
        )

    def close(self) -> None:
        self.app.close()
        self.redis.close()
