"""Assignments and their iteration results in Redis.

The library writes a pending record and reads; the cloud moves it through its states. Every
state change is one Lua script, so concurrent cloud workers, redelivered tasks and late
answers cannot store an iteration twice or advance an assignment twice.
"""

from __future__ import annotations

import json
import time
from enum import IntEnum
from typing import Any

import redis

from .errors import MessageError
from .keys import Keys
from .text import storable
from .wire import AssignmentRecord, FoldedIterations, IterationResult, decode

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'user', ARGV[2], 'spec', ARGV[3], 'status', 'pending',
           'created_at', ARGV[4], 'done', 0)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
"""

_MARK_RUNNING = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[6] then return -2 end
if st ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2], 'clients', ARGV[1],
           'current', 0, 'current_started', ARGV[2], 'spec', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('XADD', KEYS[3], '*', 'type', 'accepted')
return 1
"""

_COMPLETE_ITERATION = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'done', 1)
redis.call('HINCRBY', KEYS[2], 'bytes', string.len(ARGV[2]))
if ARGV[7] == '1' then redis.call('HINCRBY', KEYS[2], 'failed_iterations', 1) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'type', 'iteration', 'index', ARGV[1])
local st = redis.call('HGET', KEYS[2], 'status')
local idx = tonumber(ARGV[1])
if st ~= 'running' or tonumber(redis.call('HGET', KEYS[2], 'current')) ~= idx then
  if st == 'done' or st == 'failed' or st == 'cancelled' then
    for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
  end
  return 3
end
redis.call('ZREM', KEYS[4], ARGV[6] .. ':' .. ARGV[1])
if ARGV[4] == '' then
  local ended, code = 'done', 2
  if tonumber(redis.call('HGET', KEYS[2], 'failed_iterations') or '0') >=
     tonumber(redis.call('HGET', KEYS[2], 'done')) then
    ended, code = 'failed', 4
    redis.call('HSET', KEYS[2], 'error', ARGV[8])
  end
  redis.call('HSET', KEYS[2], 'status', ended, 'finished_at', ARGV[5])
  redis.call('XADD', KEYS[3], '*', 'type', 'end', 'status', ended)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
  redis.call('SET', KEYS[5], ended, 'EX', ARGV[3])
  return code
end
redis.call('HSET', KEYS[2], 'current', idx + 1, 'current_started', ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[6] .. ':' .. (idx + 1))
return 1
"""

# Fold iteration ARGV[1] into the assignment's summary of folded iterations, once.
# KEYS[1]: the assignment's hash; KEYS[2]: its iterations' hash.
# ARGV[1]: the index folded; ARGV[2]: the summary with it folded in (FoldedIterations JSON);
# ARGV[3]: the last index the caller saw folded (-1: none), compared with the stored one.
# Returns 1 when folded, 0 when someone else changed the summary first.
_FOLD = """
local last = redis.call('HGET', KEYS[1], 'folded_last') or '-1'
if last ~= ARGV[3] or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local payload = redis.call('HGET', KEYS[2], ARGV[1])
if payload then
  redis.call('HINCRBY', KEYS[1], 'bytes', -string.len(payload))
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], 'folded', ARGV[2], 'folded_last', ARGV[1])
return 1
"""

_FINISH = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st or st == 'done' or st == 'failed' or st == 'cancelled' then return -2 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error_issues', ARGV[5]) end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'limit', ARGV[8]) end
local current = redis.call('HGET', KEYS[1], 'current')
if current then redis.call('ZREM', KEYS[4], ARGV[6] .. ':' .. current) end
if ARGV[7] == '1' then redis.call('XADD', KEYS[3], '*', 'type', 'end', 'status', ARGV[1]) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
redis.call('SET', KEYS[5], ARGV[1], 'EX', ARGV[3])
return tonumber(current or -1)
"""

_MARK_SENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local sent = tonumber(redis.call('HGET', KEYS[1], 'sent') or '-1')
if tonumber(ARGV[1]) > sent then redis.call('HSET', KEYS[1], 'sent', ARGV[1]) end
return 1
"""

_REDISPATCH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'current')) ~= tonumber(ARGV[1]) then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'sent') or '-1') >= tonumber(ARGV[1]) then return 0 end
local tries = 1
local last = redis.call('HGET', KEYS[1], 'resent')
if last then
  local idx, n = string.match(last, '^(%d+):(%d+)$')
  if idx == ARGV[1] then tries = tonumber(n) + 1 end
end
if tries > tonumber(ARGV[4]) then return -1 end
redis.call('HSET', KEYS[1], 'resent', ARGV[1] .. ':' .. tries, 'current_started', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5] .. ':' .. ARGV[1])
return 1
"""

_CLAIM_DEADLINES = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return due
"""


class Completion(IntEnum):
    ALREADY_STORED = 0  # someone else stored this iteration: nothing to do
    ADVANCED = 1  # stored; the caller dispatches the next iteration
    DONE = 2  # stored; that was the last iteration
    STORED = 3  # stored; the assignment had ended (cancelled): no next iteration
    FAILED = 4  # stored; that was the last iteration and every iteration failed


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class AssignmentStore:
    """Reads and state changes of assignments; one instance per Redis connection pool."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl: int = 7 * 86400) -> None:
        self.redis = client
        self.keys = keys
        self.ttl = ttl
        self._create = client.register_script(_CREATE)
        self._mark_running = client.register_script(_MARK_RUNNING)
        self._complete = client.register_script(_COMPLETE_ITERATION)
        self._finish = client.register_script(_FINISH)
        self._claim = client.register_script(_CLAIM_DEADLINES)
        self._mark_sent = client.register_script(_MARK_SENT)
        self._redispatch = client.register_script(_REDISPATCH)
        self._fold = client.register_script(_FOLD)

    # -- writes by the cloud, once the request is authenticated -------------------------------
    def create(self, assignment_id: str, user: str, spec: dict[str, Any]) -> bool:
        keys = [self.keys.assignment(assignment_id), self.keys.user_assignments(user)]
        args = [assignment_id, user, json.dumps(spec), repr(time.time())]
        return bool(self._create(keys=keys, args=args))

    # -- writes by the cloud -----------------------------------------------------------------
    def mark_running(
        self, assignment_id: str, user: str, clients: list[int], spec: dict[str, Any], deadline: float
    ) -> int:
        """pending -> running with its clients and first deadline. 1: done; 0: it was not
        pending; -1: no such assignment; -2: it belongs to another user."""
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
        return int(self._mark_running(keys=keys, args=args))

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
        return Completion(int(self._complete(keys=keys, args=args)))

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

    def claim_redispatch(self, assignment_id: str, index: int, deadline: float, max_tries: int = 3) -> int:
        """Take the job of publishing again the chord of iteration ``index``, which a cloud
        worker planned but never published (it died in between): 1 for the one caller that
        does it (its deadline moved to ``deadline``), 0 when there is nothing to do (the
        chord was sent, the iteration is not current), -1 after ``max_tries`` attempts."""
        keys = [self.keys.assignment(assignment_id), self.keys.deadlines]
        args: list[str | int] = [index, repr(deadline), repr(time.time()), max_tries, assignment_id]
        return int(self._redispatch(keys=keys, args=args))

    def finish(
        self,
        assignment_id: str,
        status: str,
        error: str | None = None,
        issues: list[dict[str, Any]] | None = None,
        announce: bool = True,
        limit: str = "",
    ) -> int | None:
        """End the assignment once: the iteration that was running (-1: none), None if it had
        ended. ``limit``: the quota that ended it (quota.py), shown to the library."""
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
        return None if current == -2 else current

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
            text = _s(member) or ""
            aid, _, index = text.rpartition(":")
            if aid and index.isdigit():
                out.append((aid, int(index)))
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


def deadline_member(assignment_id: str, index: int) -> str:
    return f"{assignment_id}:{index}"


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
