"""Bounded storage: the per-user limits an operator sets, and Redis's own ``maxmemory``.

What one user may keep in Redis (``Settings``, README "Data retention"):

* ``OODIDA_MAX_ITERATION_BYTES``: one iteration's stored result (its JSON);
* ``OODIDA_MAX_ASSIGNMENT_BYTES``: every stored iteration of one assignment together;
* ``OODIDA_MAX_ASSIGNMENTS``: assignments running at once;
* ``OODIDA_MAX_PENDING_DEPLOYMENTS``: on-board deployments still waiting for clients;
* ``OODIDA_MAX_UNKNOWN_CLIENTS``: ids one deployment may name that are not registered.

The checks are pure functions that give a ``Refusal`` (the limit's name and a message naming it
and its value) or None. ``Quotas`` keeps the users' slots in Redis, taken with one script
(``lua/admit_slot.lua``) so that concurrent cloud workers cannot overshoot a limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from oodida_core.protocol.ids import format_ranges
from oodida_core.protocol.keys import Keys, client_queue
from oodida_core.protocol.text import shorten
from oodida_core.settings import Settings
from oodida_core.state.lua import load

MEMORY_RESERVE = 0.9  # above this share of maxmemory the cloud takes no new work


@dataclass(frozen=True)
class Refusal:
    """A limit was reached: ``limit`` names it (an ``OODIDA_*`` setting or ``maxmemory``)."""

    limit: str
    message: str


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def iteration_refusal(index: int, size: int, limit: int) -> Refusal | None:
    """Iteration ``index``'s result of ``size`` bytes against OODIDA_MAX_ITERATION_BYTES."""
    if size <= limit:
        return None
    name = "OODIDA_MAX_ITERATION_BYTES"
    return Refusal(
        name,
        f"the result of iteration {index} is {size:,} bytes, over the limit {name}={limit} "
        f"({_mib(limit)}): the assignment stopped; the iterations stored before are kept",
    )


def assignment_refusal(index: int, stored: int, size: int, limit: int) -> Refusal | None:
    """``stored`` bytes of earlier iterations plus ``size`` against OODIDA_MAX_ASSIGNMENT_BYTES."""
    if stored + size <= limit:
        return None
    name = "OODIDA_MAX_ASSIGNMENT_BYTES"
    return Refusal(
        name,
        f"with iteration {index} the assignment's results would be {stored + size:,} bytes, over "
        f"the limit {name}={limit} ({_mib(limit)}): the assignment stopped; the "
        f"{_mib(stored)} of iterations stored before are kept",
    )


def unknown_refusal(targets: Iterable[int], registered: set[int], limit: int) -> Refusal | None:
    """A deployment naming more ids not in the registry than OODIDA_MAX_UNKNOWN_CLIENTS."""
    unknown = sorted(set(targets) - registered)
    if len(unknown) <= limit:
        return None
    name = "OODIDA_MAX_UNKNOWN_CLIENTS"
    shown = format_ranges(unknown)
    shown = shorten(shown, 200)
    return Refusal(
        name,
        f"{len(unknown):,} of the clients are not registered ({shown}): a deployment may name "
        f"at most {name}={limit} such ids (vehicles not started yet, or stopped); deploy to "
        "registered clients",
    )


def slots_refusal(name: str, limit: int, what: str) -> Refusal:
    return Refusal(name, f"{what}: the limit {name}={limit} is reached")


def memory_refusal(info: Mapping[str, Any], reserve: float = MEMORY_RESERVE) -> Refusal | None:
    """Redis's INFO memory above ``reserve`` of its ``maxmemory`` (0: no limit)."""
    used, limit = int(info.get("used_memory") or 0), int(info.get("maxmemory") or 0)
    if not limit or used < reserve * limit:
        return None
    return Refusal(
        "maxmemory",
        f"Redis holds {used:,} bytes, {100 * used / limit:.0f}% of its maxmemory={limit} "
        f"({_mib(limit)}); above {100 * reserve:.0f}% the cloud takes no new assignments or "
        "deployments: purge ended assignments (oodida purge ID) or ask the operator",
    )


def out_of_memory(error: object) -> Refusal:
    """What the library says when Redis refused a write for its ``maxmemory``."""
    return Refusal(
        "maxmemory",
        f"Redis's maxmemory is reached, the request was refused ({error}): purge ended "
        "assignments (oodida purge ID) or ask the operator; nothing stored was lost",
    )


def out_of_memory_cause(exc: BaseException) -> BaseException | None:
    """The OOM error of Redis behind ``exc`` (kombu wraps a refused publish), or None."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, redis.exceptions.OutOfMemoryError) or str(seen).startswith("OOM "):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class Quotas:
    """The users' slots in Redis: running assignments and pending deployments."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self.redis = client
        self.keys = keys
        self.settings = settings
        self._admit = client.register_script(load("admit_slot"))

    def _take(self, key: str, member: str, limit: int, drop_before: float, ttl: int, now: float) -> bool:
        args: list[str | int] = [member, repr(now), limit, repr(drop_before), ttl]
        return bool(self._admit(keys=[key], args=args))

    def _admit_slot(
        self, key: str, member: str, limit: int, holds: Callable[[str], bool], ttl: int, now: float
    ) -> bool:
        drop_before = now - ttl if ttl else 0.0
        if self._take(key, member, limit, drop_before, ttl, now):
            return True
        # Full: give back the slots of what ended without saying so, then try once more.
        stale = [m for m in self._members(key) if m != member and not holds(m)]
        if stale:
            self.redis.zrem(key, *stale)
        return self._take(key, member, limit, drop_before, ttl, now)

    def _members(self, key: str) -> list[str]:
        members: Any = self.redis.zrange(key, 0, -1)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    def admit_assignment(
        self, user: str, aid: str, running: Callable[[str], bool], now: float
    ) -> Refusal | None:
        """A running slot for ``aid``, or the refusal; ``running(id)`` says whether an earlier
        assignment still runs (its slot is given back otherwise)."""
        limit = self.settings.max_assignments
        if self._admit_slot(self.keys.running(user), aid, limit, running, 0, now):
            return None
        return slots_refusal(
            "OODIDA_MAX_ASSIGNMENTS",
            limit,
            f"user {user!r} runs {limit} assignments already; cancel one or wait until one ends",
        )

    def release_assignment(self, user: str, aid: str) -> None:
        self.redis.zrem(self.keys.running(user), aid)

    def admit_deployment(
        self, user: str, deploy_id: str, pending: Callable[[str], bool], now: float
    ) -> Refusal | None:
        """A pending-deployment slot (kept ``OODIDA_ASSIGNMENT_TTL`` at most), or the refusal."""
        limit, ttl = self.settings.max_pending_deployments, self.settings.assignment_ttl
        if self._admit_slot(self.keys.deploying(user), deploy_id, limit, pending, ttl, now):
            return None
        return slots_refusal(
            "OODIDA_MAX_PENDING_DEPLOYMENTS",
            limit,
            f"user {user!r} has {limit} on-board deployments still waiting for clients; wait "
            "until their clients answered or the deployments expired",
        )

    def release_deployment(self, user: str, deploy_id: str) -> None:
        self.redis.zrem(self.keys.deploying(user), deploy_id)

    def memory(self) -> Refusal | None:
        """Refusal when Redis is near its ``maxmemory``."""
        return memory_refusal(self.redis.info("memory"))

    def expire_queues(self, client_ids: Iterable[int]) -> None:
        """Client queues expire ``OODIDA_ASSIGNMENT_TTL`` after the last task sent to them (a
        client that never comes back leaves nothing for ever; a live one empties its queue)."""
        pipe = self.redis.pipeline(transaction=False)
        for cid in client_ids:
            pipe.expire(client_queue(cid), self.settings.assignment_ttl)
        pipe.execute()
