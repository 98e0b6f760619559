"""Purging an ended assignment's data on request of its owner (``oodida purge ID``).

Everything an assignment leaves in Redis goes: its record, iterations and event stream
(``Keys.assignment_keys``), its entry in the owner's list and in the deadlines, and Celery's
keys for it: each on-board task's result and each iteration's chord counters. Without a purge
the same keys expire on their own (README, "Data retention").

Tasks of it may still answer after a purge (built-in tasks do not read the assignment's end
marker, and a purge deletes it anyway): a task that started before its iteration's deadline
answers at most a grace after it (``plan_sweep``), and its answer writes its Celery result and
the chord's join keys again. A purge made before the last dispatched iteration's deadline plus
that grace therefore schedules a second sweep for then, of the iterations whose tasks could
still answer (``oodida_core.state.sweeps``); a cloud worker's deadline watcher runs it when due
(``Purger.sweep_due``). A task taken after its deadline (by a vehicle that was offline) answers
``skipped`` whenever that is: what it writes expires after ``OODIDA_RESULT_EXPIRES``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery

from oodida_core.protocol.keys import (
    Keys,
    chord_group_id,
    deadline_member,
    header_task_id,
    parse_sweep_member,
    sweep_member,
)
from oodida_core.protocol.wire import FINAL_STATUSES, AssignmentRecord, PurgeRequest
from oodida_core.state.chords import chord_keys
from oodida_core.state.store import AssignmentStore
from oodida_core.state.sweeps import SweepStore

from .ending import iteration_deadline
from .gate import Gate
from .outcomes import Outcome

log = logging.getLogger("oodida.cloud")

# Seconds past an iteration's deadline in which a task that started before it still answers: a
# real-time reading notices the deadline within a second; the rest is Redis round trips.
SWEEP_GRACE = 5.0
RETRY_AFTER = 10.0  # seconds before a sweep that failed half-way (Redis went away) is tried again


def celery_keys(
    app: Celery, assignment_id: str, clients: list[int], iterations: int, first: int = 0
) -> list[str]:
    """Celery's result and chord keys of an assignment's iterations ``first`` to
    ``iterations - 1``."""
    backend: Any = app.backend
    keys: list[str] = []
    for index in range(first, iterations):
        keys += chord_keys(app, chord_group_id(assignment_id, index), done=True)
        results = [backend.get_key_for_task(header_task_id(assignment_id, index, c)) for c in clients]
        keys += [k.decode() if isinstance(k, bytes) else k for k in results]
    return keys


@dataclass(frozen=True)
class Sweep:
    """When a purged assignment's Celery keys are deleted again, from iteration ``first`` on."""

    due: float
    first: int


def plan_sweep(
    raw: Mapping[str, str],
    started: Iterable[tuple[int, float]],
    now: float,
    grace: float,
    code_time_limit: float,
) -> Sweep | None:
    """The second sweep of an assignment purged at ``now``, from its stored record ``raw`` and
    each stored iteration's (index, start); None when no task of it can answer any more.

    A task that started before its iteration's deadline answers at the latest ``late`` seconds
    after it: ``grace``, plus ``code_time_limit`` for custom on-board code (a call runs that
    long). The sweep is due ``late`` after the deadline of the last dispatched iteration (the
    record's current one: its start plus the spec's timeout). An earlier iteration's tasks
    answer after ``now`` only if it ended at its deadline less than ``late`` ago, which is when
    the next one started: the sweep covers the iterations from the one before the first that
    started less than ``late`` ago (the current one at least)."""
    try:
        spec = json.loads(raw.get("spec") or "{}")
        timeout = float(spec["timeout"])
        current = int(raw.get("current") or 0)
        late = grace + (code_time_limit if spec.get("onboard") == "custom" else 0.0)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    due = iteration_deadline(raw, timeout + late)  # the current iteration's start + timeout + late
    if not math.isfinite(due) or due <= now:
        return None
    starts = [*started, (current, due - timeout - late)]
    recent = [index for index, start in starts if start > now - late]
    first = max(0, min(recent) - 1) if recent else current
    return Sweep(due, min(first, current))


class Purger:
    """Deletes an ended assignment's keys: through its own Redis client and key names, given
    explicitly (the store has no bulk delete of Celery's keys); then, when tasks of it may still
    answer, once more when they no longer can (``sweep_due``)."""

    def __init__(
        self,
        app: Celery,
        store: AssignmentStore,
        client: redis.Redis,
        keys: Keys,
        gate: Gate,
        sweeps: SweepStore,
        *,
        grace: float = SWEEP_GRACE,
        code_time_limit: float = 30.0,
    ) -> None:
        self.app = app
        self.store = store
        self.redis = client
        self.keys = keys
        self.gate = gate
        self.sweeps = sweeps
        self.grace = grace
        self.code_time_limit = code_time_limit

    def purge(self, request: PurgeRequest, record: AssignmentRecord) -> Outcome:
        """Purge the user's assignment ``record`` (requests.py checked it is theirs) if it ended."""
        aid = record.id
        if record.status not in FINAL_STATUSES:
            self.gate.refuse(
                request,
                "refused",
                f"assignment {aid} is {record.status}: cancel it first (oodida cancel {aid}), then purge it",
            )
            return Outcome.REFUSED
        stored = self.store.iterations(aid)
        # Chords were sent up to the last stored iteration and, at most, the one after it.
        count = max((it.index for it in stored), default=-1) + 2 if record.clients else 0
        clients = list(record.clients)
        now = time.time()
        started = [(it.index, it.started_at) for it in stored]
        sweep = (
            plan_sweep(self.store.raw(aid), started, now, self.grace, self.code_time_limit)
            if clients
            else None
        )
        if sweep is not None:  # tasks may still answer: scheduled first (a purge cut short is swept)
            member = sweep_member(aid, min(sweep.first, count), count, clients)
            self.sweeps.schedule(member, sweep.due)
        keys = [*self.keys.assignment_keys(aid), *celery_keys(self.app, aid, clients, count)]
        pipe = self.redis.pipeline()
        for start in range(0, len(keys), 1000):
            pipe.delete(*keys[start : start + 1000])
        pipe.zrem(self.keys.user_assignments(record.user), aid)
        pipe.zrem(self.keys.deadlines, *(deadline_member(aid, i) for i in range(count + 1)))
        deleted = sum(int(n) for n in pipe.execute()[: (len(keys) + 999) // 1000])
        again = f"; swept again in {sweep.due - now:.0f} s" if sweep is not None else ""
        log.info("assignment %s of %s purged: %d keys deleted%s", aid, record.user, deleted, again)
        self.gate.ok(request, {"deleted": deleted})
        return Outcome.PURGED

    def sweep_due(self, limit: int = 100) -> int:
        """Delete again the Celery keys of every purged assignment whose sweep is due (at most
        ``limit``); each member is swept by the one cloud worker that removed it. Returns how
        many were swept."""
        swept = 0
        for member in self.sweeps.due(limit=limit):
            if not self.sweeps.take(member):
                continue  # another cloud worker took it
            parsed = parse_sweep_member(member)
            if parsed is None:
                log.warning("dropped a malformed purge sweep %.200r", member)
                continue
            aid, first, end, clients = parsed
            try:
                deleted = self._delete(celery_keys(self.app, aid, clients, end, first))
            except redis.RedisError:
                with contextlib.suppress(redis.RedisError):  # tried again later, if Redis lets us
                    self.sweeps.schedule(member, time.time() + RETRY_AFTER)
                raise
            swept += 1
            log.info("purged assignment %s swept again: %d late keys deleted", aid, deleted)
        return swept

    def _delete(self, keys: list[str]) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(keys), 1000):
            pipe.delete(*keys[start : start + 1000])
        return sum(int(n) for n in pipe.execute())
