"""Health checks for operators and container orchestrators (``oodida health``).

Each check answers from what the processes publish anyway: Redis answers a PING, a client's
heartbeat in the live registry is fresh, a cloud worker on this host beats, Flower answers its
``/healthcheck``, this host's jail for custom code reaches ``OODIDA_JAIL``. A worker's
heartbeat comes from a thread of the worker process itself, so a
process that died or lost Redis turns unhealthy within ``settings.live_window`` seconds.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from oodida_core.protocol.ids import format_ranges
from oodida_core.settings import Settings
from oodida_core.state.registry import Registry


@dataclass
class Health:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def report(self) -> str:
        lines = [f"ok: {line}" for line in self.ok] + [f"unhealthy: {line}" for line in self.problems]
        return "\n".join(lines)


def check_flower(url: str, timeout: float = 5.0, login: str | None = None) -> str | None:
    """None when Flower at ``url`` answers its health check, else what went wrong. With
    ``login`` (``user:password``, default ``$FLOWER_BASIC_AUTH``) it also logs in and asks the
    workers through Redis (``/api/workers?refresh=1``): a Flower that lost Redis fails."""
    target = url.rstrip("/") + "/healthcheck"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            body = response.read(64)
    except OSError as exc:
        return f"Flower at {target}: {exc}"
    if body.strip() != b"OK":
        return f"Flower at {target} answered {body!r}"
    login = login if login is not None else os.environ.get("FLOWER_BASIC_AUTH", "")
    if not login:
        return None
    api = url.rstrip("/") + "/api/workers?refresh=1"
    request = urllib.request.Request(
        api, headers={"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout * 2) as response:
            workers = json.loads(response.read(4 * 1024 * 1024))
    except (OSError, ValueError) as exc:
        return f"Flower at {api}: {exc}"
    return None if isinstance(workers, dict) else f"Flower at {api} answered {str(workers)[:80]!r}"


def check_jail() -> tuple[bool, str]:
    """Whether this host's jail for custom code reaches the operator's minimum
    (``OODIDA_JAIL``), and its level, layers and what is missing."""
    from oodida_core.customcode.jail import LEVELS, JailSettings, probe

    jail = JailSettings.from_env()
    caps = probe(jail.bwrap)
    enough = LEVELS.index(caps.level) >= LEVELS.index(jail.minimum)
    return enough, f"custom code: {caps.describe()} (OODIDA_JAIL={jail.minimum})"


def check_health(
    settings: Settings,
    *,
    jail: bool = False,
    clients: Sequence[int] = (),
    cloud_here: bool = False,
    any_cloud: bool = False,
    flower_url: str | None = None,
    host: str | None = None,
) -> Health:
    """Check what is asked; Redis is checked whenever a registry check is."""
    health = Health()
    if flower_url is not None:
        problem = check_flower(flower_url)
        if problem:
            health.problems.append(problem)
        else:
            health.ok.append(f"Flower answers at {flower_url}")
    if jail:
        enough, line = check_jail()
        (health.ok if enough else health.problems).append(line)
    if not (clients or cloud_here or any_cloud):
        return health
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
    try:
        client.ping()
        registry = Registry(client, settings)
        live = {c.client_id for c in registry.live(clients)} if clients else set()  # only what is asked
        # a vehicle's user may not read the cloud's heartbeats: read them only when asked
        cloud = registry.live_cloud_workers() if cloud_here or any_cloud else []
    except redis.exceptions.RedisError as exc:
        health.problems.append(f"Redis: {exc}")
        return health
    finally:
        client.close()
    if clients:
        absent = sorted(set(clients) - live)
        if absent:
            health.problems.append(
                f"clients {format_ranges(absent)} are not live "
                f"(no heartbeat in the last {settings.live_window:g}s)"
            )
        else:
            health.ok.append(f"clients {format_ranges(clients)} are live")
    if cloud_here:
        host = host or socket.gethostname()
        here = [w for w in cloud if w.endswith("@" + host)]
        if here:
            health.ok.append(f"cloud worker {', '.join(here)} is live")
        else:
            health.problems.append(f"no live cloud worker on {host} (live: {', '.join(cloud) or 'none'})")
    if any_cloud:
        if cloud:
            health.ok.append(f"{len(cloud)} cloud worker(s) live")
        else:
            health.problems.append("no cloud worker is live")
    return health
