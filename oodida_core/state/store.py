"""Assignments and their iteration results in Redis.

The library writes a pending record and reads; the cloud moves it through its states. Every
state change is one Lua script, so concurrent cloud workers, redelivered tasks and late
answers cannot store an iteration twice or advance an assignment twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis

from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.keys import Keys, deadline_member, parse_deadline_member
from oodida_core.protocol.text import storable
from oodida_core.protocol.wire import AssignmentRecord, FoldedIterations, IterationResult, decode
from oodida_core.state.lua import load


class _Outcome(str, Enum):
    """A store's typed result: ``str`` and ``Enum`` (``StrEnum`` on Python 3.10), shown as its
    value."""

    def __str__(self) -> str:
        return self.value


class Start(_Outcome):
    """What ``mark_running`` did."""

    STARTED = "started"  # pending -> running: the caller dispatches the first iteration
    NOT_PENDING = "not_pending"  # it had started or ended already (a redelivered start)
    MISSING = "missing"  # no such assignment (it expired or was purged)
    NOT_OWNER = "not_owner"  # it belongs to another user: nothing changed


class Completion(_Outcome):
    """What ``complete_iteration`` did."""

    ALREADY_STORED = "already_stored"  # someone else stored this iteration: nothing to do
    ADVANCED = "advanced"  # stored; the caller dispatches the next iteration
    DONE = "done"  # stored; that was the last iteration
    STORED = "stored"  # stored; the assignment had ended (cancelled): no next iteration
    FAILED = "failed"  # stored; that was the last iteration and every iteration failed


class Redispatch(_Outcome):
    """What ``claim_redispatch`` did."""

    CLAIMED = "claimed"  # the one caller that publishes the chord again (deadline moved)
    NOTHING_TO_DO = "nothing_to_do"  # the chord was sent, or the iteration is not current
    GAVE_UP = "gave_up"  # it was claimed ``max_tries`` times already: the caller fails it


class Finish(_Outcome):
    """What ``finish`` did."""

    ENDED = "ended"  # ended now, with the status asked for
    ALREADY_ENDED = "already_ended"  # it had ended, or there is no such assignment: no change


@dataclass(frozen=True)
class Finished:
    """``finish``'s outcome and the iteration that was running when it ended (None: none was,
    or it had ended already)."""

    outcome: Finish
    iteration: int | None = None


# The scripts' integer replies (lua/*.lua headers) as outcomes.
_STARTS = {1: Start.STARTED, 0: Start.NOT_PENDING, -1: Start.MISSING, -2: Start.NOT_OWNER}
_COMPLETIONS = {
    0: Completion.ALREADY_STORED,
    1: Completion.ADVANCED,
    2: Completion.DONE,
    3: Completion.STORED,
    4: Completion.FAILED,
}
_REDISPATCHES = {1: Redispatch.CLAIMED, 0: Redispatch.NOTHING_TO_DO, -1: Redispatch.GAVE_UP}


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class AssignmentStore:
    """Reads and state changes of assignments; one instance per Redis connection pool."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl: int = 7 * 86400) -> None:
        self.redis = client
        self.keys = keys
        self.ttl = ttl
        self._create = client.register_script(load("create_assignment"))
        self._mark_running = client.register_script(load("mark_running"))
        self._complete = client.register_script(load("complete_iteration"))
        self._finish = client.register_script(load("finish_assignment"))
        self._claim = client.register_script(load("claim_deadlines"))
        self._mark_sent = client.register_script(load("mark_sent"))
        self._redispatch = client.register_script(load("claim_redispatch"))
        self._fold = client.register_script(load("fold_iteration"))

    # -- writes by the cloud, once the request is authenticated -------------------------------
    def create(self, assignment_id: str, user: str, spec: dict[str, Any]) -> bool:
        keys = [self.keys.assignment(assignment_id), self.keys.user_assignments(user)]
        args = [assignment_id, user, json.dumps(spec), repr(time.time())]
        return bool(self._create(keys=keys, args=args))

    # -- writes by the cloud -----------------------------------------------------------------
    def mark_running(
        self, assignment_id: str, user: str, clients: list[int], spec: dict[str, Any], deadline: float
    ) -> Start:
        """pending -> running with its clients and first deadline, for its owner only."""
        keys = [
            self.keys.assignment(assignment_id),
            self.keys.deadlines,
            self.keys.events(assignment_id),
        ]
        args = [
            json.dumps(clients),
            repr(time.time()),
            repr(deadline),
            deadline_member(assignment_id, 0),
            json.dumps(spec),
            user,
        ]
        return _STARTS[int(self._mark_running(keys=keys, args=args))]

    def complete_iteration(
        self,
        assignment_id: str,
        result: IterationResult,
        next_deadline: float | None,
        payload: str | None = None,
        failure: str = "",
    ) -> Completion:
        """Store an iteration's result (``payload``: its JSON, when the caller has it) and, in
        the same step, move the assignment on: to the next iteration (its deadline armed) or,
        when ``next_deadline`` is None, to done, or to failed when every iteration failed
        (``failure``: the error the record then holds). The record's ``bytes`` counts what is
        stored; ``failed_iterations`` the iterations whose status is failed."""
        keys = [
            self.keys.iterations(assignment_id),
            self.keys.assignment(assignment_id),
            self.keys.events(assignment_id),
            self.keys.deadlines,
            self.keys.assignment_ended(assignment_id),  # what a vehicle reads (Keys)
        ]
        args: list[str | int] = [
            result.index,
            result.to_json() if payload is None else payload,
            self.ttl,
            "" if next_deadline is None else repr(next_deadline),
            repr(time.time()),
            assignment_id,
            "1" if result.status == "failed" else "0",
            storable(failure or "every iteration failed"),
        ]
        return _COMPLETIONS[int(self._complete(keys=keys, args=args))]

    def folded(self, assignment_id: str) -> tuple[FoldedIterations | None, int]:
        """The summary of the folded iterations and the last index folded (-1: none)."""
        raw, last = self.redis.hmget(self.keys.assignment(assignment_id), ["folded", "folded_last"])
        summary = decode(FoldedIterations, raw) if raw else None
        return summary, int(last) if last is not None else -1

    def fold(self, assignment_id: str, index: int, summary: FoldedIterations, seen_last: int) -> bool:
        """Replace iteration ``index`` by ``summary`` (which holds it), if the last index folded
        is still ``seen_last``; False when another caller folded first."""
        keys = [self.keys.assignment(assignment_id), self.keys.iterations(assignment_id)]
        return bool(self._fold(keys=keys, args=[index, summary.to_json(), str(seen_last)]))

    def mark_sent(self, assignment_id: str, index: int) -> None:
        """Record that iteration ``index``'s chord was published (after publishing it)."""
        self._mark_sent(keys=[self.keys.assignment(assignment_id)], args=[index])

    def claim_redispatch(
        self, assignment_id: str, index: int, deadline: float, max_tries: int = 3
    ) -> Redispatch:
        """Take the job of publishing again the chord of iteration ``index``, which a cloud
        worker planned but never published (it died in between): CLAIMED for the one caller
        that does it (its deadline moved to ``deadline``), NOTHING_TO_DO when the chord was
        sent or the iteration is not current, GAVE_UP after ``max_tries`` attempts."""
        keys = [self.keys.assignment(assignment_id), self.keys.deadlines]
        args: list[str | int] = [index, repr(deadline), repr(time.time()), max_tries, assignment_id]
        return _REDISPATCHES[int(self._redispatch(keys=keys, args=args))]

    def finish(
        self,
        assignment_id: str,
        status: str,
        error: str | None = None,
        issues: list[dict[str, Any]] | None = None,
        announce: bool = True,
        limit: str = "",
    ) -> Finished:
        """End the assignment once (ALREADY_ENDED if it had ended), telling which iteration
        was running. ``limit``: the quota that ended it (quota.py), shown to the library."""
        keys = [
            self.keys.assignment(assignment_id),
            self.keys.iterations(assignment_id),
            self.keys.events(assignment_id),
            self.keys.deadlines,
            self.keys.assignment_ended(assignment_id),  # what a vehicle reads (Keys)
        ]
        args: list[str | int] = [
            status,
            repr(time.time()),
            self.ttl,
            storable(error or ""),  # an error may quote what others wrote
            json.dumps(issues) if issues else "",
            assignment_id,
            "1" if announce else "0",
            limit,
        ]
        current = int(self._finish(keys=keys, args=args))
        if current == -2:
            return Finished(Finish.ALREADY_ENDED)
        return Finished(Finish.ENDED, None if current == -1 else current)

    def announce_end(self, assignment_id: str) -> None:
        """Tell readers the assignment ended (after ``finish(..., announce=False)``)."""
        status = self.status(assignment_id) or "unknown"
        self.redis.xadd(self.keys.events(assignment_id), {"type": "end", "status": status})

    def drop_deadline(self, assignment_id: str, index: int) -> None:
        self.redis.zrem(self.keys.deadlines, deadline_member(assignment_id, index))

    def claim_due_deadlines(self, retry_after: float, limit: int = 100) -> list[tuple[str, int]]:
        """Deadlines that passed, each handed to one caller and re-armed ``retry_after`` later."""
        now = time.time()
        due = self._claim(keys=[self.keys.deadlines], args=[repr(now), repr(now + retry_after), limit])
        out: list[tuple[str, int]] = []
        for member in due:
            parsed = parse_deadline_member(_s(member) or "")
            if parsed is not None:
                out.append(parsed)
            else:
                self.redis.zrem(self.keys.deadlines, member)
        return out

    # -- reads -------------------------------------------------------------------------------
    def raw(self, assignment_id: str) -> dict[str, str]:
        data = self.redis.hgetall(self.keys.assignment(assignment_id))
        return {_s(k) or "": _s(v) or "" for k, v in data.items()}

    def status(self, assignment_id: str) -> str | None:
        return _s(self.redis.hget(self.keys.assignment(assignment_id), "status"))

    def user(self, assignment_id: str) -> str | None:
        return _s(self.redis.hget(self.keys.assignment(assignment_id), "user"))

    def get(self, assignment_id: str) -> AssignmentRecord | None:
        raw = self.raw(assignment_id)
        return record_from_hash(assignment_id, raw) if raw else None

    def snapshot(self, assignment_id: str) -> tuple[AssignmentRecord | None, list[IterationResult]]:
        """The record and every stored iteration, read in one round trip."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys.assignment(assignment_id))
        pipe.hgetall(self.keys.iterations(assignment_id))
        raw_record, raw_iterations = pipe.execute()
        if not raw_record:
            return None, []
        record = record_from_hash(assignment_id, {_s(k) or "": _s(v) or "" for k, v in raw_record.items()})
        iterations = sorted(
            (decode(IterationResult, v) for v in raw_iterations.values()), key=lambda r: r.index
        )
        return record, iterations

    def iteration(self, assignment_id: str, index: int) -> IterationResult | None:
        data = self.redis.hget(self.keys.iterations(assignment_id), str(index))
        return decode(IterationResult, data) if data is not None else None

    def has_iteration(self, assignment_id: str, index: int) -> bool:
        return bool(self.redis.hexists(self.keys.iterations(assignment_id), str(index)))

    def iterations(self, assignment_id: str) -> list[IterationResult]:
        data = self.redis.hgetall(self.keys.iterations(assignment_id))
        results = [decode(IterationResult, v) for v in data.values()]
        return sorted(results, key=lambda r: r.index)

    def read_events(
        self, assignment_id: str, after: str = "0", block_ms: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        reply: Any = self.redis.xread({self.keys.events(assignment_id): after}, block=block_ms)
        out: list[tuple[str, dict[str, str]]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                out.append((_s(entry_id) or "", {_s(k) or "": _s(v) or "" for k, v in fields.items()}))
        return out

    def user_assignments(self, user: str) -> list[str]:
        members: Any = self.redis.zrange(self.keys.user_assignments(user), 0, -1)
        return [_s(m) or "" for m in members]

    def purge(self, assignment_id: str, user: str) -> int:
        pipe = self.redis.pipeline()
        pipe.delete(*self.keys.assignment_keys(assignment_id))
        pipe.zrem(self.keys.user_assignments(user), assignment_id)
        return int(pipe.execute()[0])


def record_from_hash(assignment_id: str, raw: dict[str, str]) -> AssignmentRecord:
    """Build the record from the assignment hash, refusing a corrupt one with MessageError."""
    try:
        spec = json.loads(raw.get("spec") or "{}")
        clients = json.loads(raw["clients"]) if raw.get("clients") else []
        issues = json.loads(raw["error_issues"]) if raw.get("error_issues") else []
        folded = json.loads(raw["folded"]) if raw.get("folded") else None
    except (ValueError, KeyError) as exc:
        raise MessageError(f"corrupt record of assignment {assignment_id}: {exc}") from None

    def num(name: str) -> float | None:
        value = raw.get(name)
        return float(value) if value else None

    return decode(
        AssignmentRecord,
        {
            "id": assignment_id,
            "user": raw.get("user", ""),
            "status": raw.get("status", "pending"),
            "spec": spec if isinstance(spec, dict) else {},
            "clients": clients,
            "iterations_done": int(raw.get("done") or 0),
            "created_at": num("created_at") or 0.0,
            "started_at": num("started_at"),
            "finished_at": num("finished_at"),
            "error": raw.get("error") or None,
            "error_issues": issues,
            "limit": raw.get("limit") or None,
            "failed_iterations": int(raw.get("failed_iterations") or 0),
            "folded": folded,
        },
    )
