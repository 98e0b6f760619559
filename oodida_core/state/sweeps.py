"""The second sweeps of purged assignments, in one sorted set (``Keys.purge_sweeps``).

A purge deletes every key of an assignment at once, but an on-board task of its last
iteration may still answer after that (a vehicle was reading, or had the task queued): its
Celery result and chord join keys would be written again. So a purge made before that
iteration's deadline (and a grace) schedules a sweep for then: a member naming the assignment
and what names Celery's keys of the iterations that could still answer (``keys.sweep_member``),
scored by when it is due. Every cloud worker's deadline watcher looks for due members;
``take`` hands each to one of them (oodida_cloud/purge.py).
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis

from oodida_core.protocol.keys import Keys
from oodida_core.state.lua import load


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SweepStore:
    """Schedules, finds and hands out the sweeps. ``keep``: seconds the set lives after its
    latest sweep was due (``OODIDA_RESULT_EXPIRES``: by then a sweep's keys expired anyway)."""

    def __init__(self, client: redis.Redis, keys: Keys, keep: int) -> None:
        self.redis = client
        self.keys = keys
        self.keep = keep
        self._schedule = client.register_script(load("schedule_sweep"))

    def schedule(self, member: str, due: float, now: float | None = None) -> None:
        """Sweep ``member`` at ``due`` (seconds since the epoch)."""
        now = time.time() if now is None else now
        ttl = math.ceil(max(due - now, 0.0)) + self.keep
        self._schedule(keys=[self.keys.purge_sweeps], args=[repr(due), member, ttl])

    def due(self, now: float | None = None, limit: int = 100) -> list[str]:
        """At most ``limit`` members whose sweep is due, earliest first."""
        now = time.time() if now is None else now
        members: Any = self.redis.zrangebyscore(self.keys.purge_sweeps, "-inf", repr(now), start=0, num=limit)
        return [_s(m) for m in members]

    def take(self, member: str) -> bool:
        """Remove ``member``: True for the one caller that removed it (that caller sweeps)."""
        return bool(self.redis.zrem(self.keys.purge_sweeps, member))
