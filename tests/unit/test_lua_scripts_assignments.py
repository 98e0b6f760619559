"""The assignment store's Lua scripts against a real Redis, called as their headers say: each
reply a header names comes out here, with its edge cases (a missing record, another user, a
repeated call, a compare-and-set lost); then the store's typed outcomes of those replies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from oodida_core.protocol.keys import Keys, deadline_member, parse_deadline_member
from oodida_core.protocol.wire import IterationResult
from oodida_core.state.lua import load
from oodida_core.state.store import AssignmentStore, Completion, Finish, Redispatch, Start
from oodida_ops.redis_server import EmbeddedRedis

A, IT, EV, DL, END = "a:x", "a:x:it", "a:x:ev", "deadlines", "end:x"
ASSIGNMENT = [A, IT, EV, DL, END]  # complete_iteration and finish_assignment name these
COMPLETE = [IT, A, EV, DL, END]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("lua")) as srv:
        yield srv


@pytest.fixture()
def r(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


def run(r: redis.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    return r.register_script(load(name))(keys=keys, args=args)


def running(r: redis.Redis, current: int = 0, **fields: str | int) -> None:
    record: dict[Any, Any] = {"user": "alice", "status": "running", "current": current, "done": 0}
    record.update(fields)
    r.hset(A, mapping=record)
    r.zadd(DL, {f"x:{current}": 100.0})


def event_types(r: redis.Redis) -> list[str]:
    entries: Any = r.xrange(EV)
    return [fields["type"] for _id, fields in entries]


# -- create_assignment ---------------------------------------------------------------------------
def test_create_records_a_pending_assignment_and_indexes_it(r: redis.Redis) -> None:
    assert run(r, "create_assignment", [A, "u:alice"], ["x", "alice", '{"n": 1}', "5.0"]) == 1
    assert r.hgetall(A) == {
        "user": "alice",
        "spec": '{"n": 1}',
        "status": "pending",
        "created_at": "5.0",
        "done": "0",
    }
    assert r.zscore("u:alice", "x") == 5.0


def test_create_again_changes_nothing(r: redis.Redis) -> None:
    run(r, "create_assignment", [A, "u:alice"], ["x", "alice", '{"n": 1}', "5.0"])
    assert run(r, "create_assignment", [A, "u:mallory"], ["x", "mallory", '{"n": 2}', "6.0"]) == 0
    assert r.hget(A, "user") == "alice" and r.hget(A, "spec") == '{"n": 1}'
    assert not r.exists("u:mallory")


# -- mark_running --------------------------------------------------------------------------------
def mark(r: redis.Redis, user: str = "alice") -> Any:
    return run(r, "mark_running", [A, DL, EV], ["[1, 2]", "7.0", "9.0", "x:0", '{"n": 3}', user])


def test_mark_running_starts_a_pending_assignment_of_its_owner(r: redis.Redis) -> None:
    r.hset(A, mapping={"user": "alice", "status": "pending", "spec": "{}"})
    assert mark(r) == 1
    record = r.hgetall(A)
    assert (record["status"], record["clients"], record["current"]) == ("running", "[1, 2]", "0")
    assert (record["started_at"], record["current_started"], record["spec"]) == ("7.0", "7.0", '{"n": 3}')
    assert r.zscore(DL, "x:0") == 9.0
    assert event_types(r) == ["accepted"]


def test_mark_running_twice_starts_it_once(r: redis.Redis) -> None:
    r.hset(A, mapping={"user": "alice", "status": "pending"})
    mark(r)
    assert mark(r) == 0
    assert event_types(r) == ["accepted"]


def test_mark_running_of_a_missing_assignment_creates_nothing(r: redis.Redis) -> None:
    assert mark(r) == -1
    assert not r.exists(A, DL, EV)


def test_mark_running_by_another_user_changes_nothing(r: redis.Redis) -> None:
    r.hset(A, mapping={"user": "alice", "status": "pending"})
    assert mark(r, user="mallory") == -2
    assert r.hget(A, "status") == "pending" and not r.exists(DL, EV)


# -- complete_iteration --------------------------------------------------------------------------
def complete(
    r: redis.Redis, index: int, next_deadline: str = "", failed: bool = False, payload: str = "{}"
) -> Any:
    args = [index, payload, 60, next_deadline, "8.0", "x", "1" if failed else "0", "all failed"]
    return run(r, "complete_iteration", COMPLETE, args)


def test_complete_stores_the_iteration_and_arms_the_next_deadline(r: redis.Redis) -> None:
    running(r)
    assert complete(r, 0, next_deadline="20.0", payload='{"v": 1}') == 1
    assert r.hget(IT, "0") == '{"v": 1}'
    assert r.hmget(A, "done", "bytes", "current", "current_started") == ["1", "8", "1", "8.0"]
    assert r.zrange(DL, 0, -1, withscores=True) == [("x:1", 20.0)]
    assert event_types(r) == ["iteration"]


def test_complete_of_the_last_iteration_ends_the_assignment_done(r: redis.Redis) -> None:
    running(r)
    assert complete(r, 0) == 2
    assert r.hmget(A, "status", "finished_at") == ["done", "8.0"]
    assert r.get(END) == "done" and 0 < r.ttl(END) <= 60
    assert all(0 < r.ttl(k) <= 60 for k in (IT, A, EV))
    assert not r.exists(DL)
    assert event_types(r) == ["iteration", "end"]


def test_complete_of_a_failed_last_iteration_is_done_when_another_succeeded(r: redis.Redis) -> None:
    running(r, current=1, done=1)
    assert complete(r, 1, failed=True) == 2
    assert r.hmget(A, "status", "failed_iterations", "error") == ["done", "1", None]


def test_complete_when_every_iteration_failed_ends_it_failed_with_the_error(r: redis.Redis) -> None:
    running(r)
    assert complete(r, 0, failed=True) == 4
    assert r.hmget(A, "status", "error", "failed_iterations") == ["failed", "all failed", "1"]
    assert r.get(END) == "failed"


def test_complete_again_stores_nothing(r: redis.Redis) -> None:
    running(r)
    complete(r, 0, next_deadline="20.0", payload='{"v": 1}')
    assert complete(r, 0, next_deadline="30.0", payload='{"v": 2}') == 0
    assert r.hget(IT, "0") == '{"v": 1}' and r.hget(A, "done") == "1"
    assert r.zrange(DL, 0, -1, withscores=True) == [("x:1", 20.0)]


def test_complete_of_an_iteration_that_is_not_current_stores_it_and_moves_nothing(r: redis.Redis) -> None:
    running(r, current=2)
    assert complete(r, 1, next_deadline="20.0") == 3
    assert r.hget(IT, "1") == "{}" and r.hget(A, "current") == "2"
    assert r.zrange(DL, 0, -1) == ["x:2"] and r.ttl(A) == -1


def test_complete_after_a_cancel_stores_it_and_lets_the_keys_expire(r: redis.Redis) -> None:
    running(r, status="cancelled")
    assert complete(r, 0, next_deadline="20.0") == 3
    assert r.hget(A, "status") == "cancelled"
    assert all(0 < r.ttl(k) <= 60 for k in (IT, A, EV))


# -- fold_iteration ------------------------------------------------------------------------------
def test_fold_replaces_an_iteration_by_the_summary(r: redis.Redis) -> None:
    r.hset(A, mapping={"status": "running", "bytes": 10})
    r.hset(IT, "0", "12345")
    assert run(r, "fold_iteration", [A, IT], [0, '{"count": 1}', "-1"]) == 1
    assert r.hmget(A, "folded", "folded_last", "bytes") == ['{"count": 1}', "0", "5"]
    assert not r.hexists(IT, "0")


def test_fold_of_an_iteration_without_a_stored_result_only_moves_the_summary(r: redis.Redis) -> None:
    r.hset(A, mapping={"status": "running", "bytes": 10, "folded_last": "0"})
    assert run(r, "fold_iteration", [A, IT], [1, '{"count": 2}', "0"]) == 1
    assert r.hmget(A, "folded_last", "bytes") == ["1", "10"]


def test_fold_loses_when_another_caller_folded_first(r: redis.Redis) -> None:
    r.hset(A, mapping={"status": "running", "folded": "theirs", "folded_last": "0"})
    r.hset(IT, "1", "x")
    assert run(r, "fold_iteration", [A, IT], [1, "mine", "-1"]) == 0
    assert r.hget(A, "folded") == "theirs" and r.hexists(IT, "1")


def test_fold_of_a_missing_assignment_writes_nothing(r: redis.Redis) -> None:
    r.hset(IT, "0", "x")
    assert run(r, "fold_iteration", [A, IT], [0, "mine", "-1"]) == 0
    assert not r.exists(A) and r.hexists(IT, "0")


# -- finish_assignment ---------------------------------------------------------------------------
def finish(
    r: redis.Redis, status: str = "failed", announce: str = "1", error: str = "", limit: str = ""
) -> Any:
    args = [status, "9.0", 60, error, '[{"field": "f"}]' if error else "", "x", announce, limit]
    return run(r, "finish_assignment", ASSIGNMENT, args)


def test_finish_ends_a_running_assignment_and_names_its_current_iteration(r: redis.Redis) -> None:
    running(r, current=2)
    assert finish(r, error="boom", limit="OODIDA_MAX_ASSIGNMENT_BYTES") == 2
    record = r.hgetall(A)
    assert (record["status"], record["finished_at"], record["error"]) == ("failed", "9.0", "boom")
    assert (record["error_issues"], record["limit"]) == ('[{"field": "f"}]', "OODIDA_MAX_ASSIGNMENT_BYTES")
    assert not r.exists(DL)
    assert event_types(r) == ["end"] and r.get(END) == "failed"
    assert all(0 < r.ttl(k) <= 60 for k in (A, EV, END))


def test_finish_of_a_pending_assignment_names_no_iteration(r: redis.Redis) -> None:
    r.hset(A, mapping={"user": "alice", "status": "pending"})
    assert finish(r, status="cancelled", announce="0") == -1
    assert r.hget(A, "status") == "cancelled" and "error" not in r.hgetall(A)
    assert not r.exists(EV)  # the caller announces the end later
    assert r.get(END) == "cancelled"


def test_finish_again_or_of_a_missing_assignment_changes_nothing(r: redis.Redis) -> None:
    assert finish(r) == -2
    assert not r.exists(A, END)
    running(r)
    finish(r, status="cancelled")
    assert finish(r, status="failed") == -2
    assert r.hget(A, "status") == "cancelled" and event_types(r) == ["end"]


# -- mark_sent -----------------------------------------------------------------------------------
def test_mark_sent_only_grows(r: redis.Redis) -> None:
    r.hset(A, "status", "running")
    assert run(r, "mark_sent", [A], [3]) == 1
    assert run(r, "mark_sent", [A], [1]) == 1
    assert r.hget(A, "sent") == "3"


def test_mark_sent_of_a_missing_assignment_creates_nothing(r: redis.Redis) -> None:
    assert run(r, "mark_sent", [A], [0]) == 0
    assert not r.exists(A)


# -- claim_redispatch ----------------------------------------------------------------------------
def claim(r: redis.Redis, index: int = 1, max_tries: int = 2) -> Any:
    return run(r, "claim_redispatch", [A, DL], [index, "50.0", "9.0", max_tries, "x"])


def test_claim_redispatch_counts_the_attempt_and_moves_the_deadline(r: redis.Redis) -> None:
    running(r, current=1, sent=0)
    assert claim(r) == 1
    assert r.hmget(A, "resent", "current_started") == ["1:1", "9.0"]
    assert r.zscore(DL, "x:1") == 50.0
    assert claim(r) == 1
    assert r.hget(A, "resent") == "1:2"


def test_claim_redispatch_gives_up_after_the_tries_allowed(r: redis.Redis) -> None:
    running(r, current=1, resent="1:2")
    assert claim(r, max_tries=2) == -1
    assert r.hget(A, "resent") == "1:2" and r.zscore(DL, "x:1") == 100.0


def test_claim_redispatch_of_another_iteration_counts_afresh(r: redis.Redis) -> None:
    running(r, current=1, resent="0:2")
    assert claim(r, max_tries=2) == 1
    assert r.hget(A, "resent") == "1:1"


@pytest.mark.parametrize(
    "fields",
    [{"status": "done"}, {"current": 2}, {"sent": 1}],
    ids=["not running", "not the current iteration", "already sent"],
)
def test_claim_redispatch_has_nothing_to_do(r: redis.Redis, fields: dict[Any, Any]) -> None:
    running(r, current=1)
    r.hset(A, mapping=fields)
    assert claim(r) == 0
    assert not r.hexists(A, "resent")


def test_claim_redispatch_of_a_missing_assignment_has_nothing_to_do(r: redis.Redis) -> None:
    assert claim(r) == 0
    assert not r.exists(A, DL)


# -- claim_deadlines -----------------------------------------------------------------------------
def test_due_deadlines_go_to_one_caller_earliest_first_and_are_rearmed(r: redis.Redis) -> None:
    r.zadd(DL, {"x:0": 1.0, "y:3": 2.0, "z:1": 3.0, "w:0": 99.0})
    assert run(r, "claim_deadlines", [DL], ["10.0", "40.0", 2]) == ["x:0", "y:3"]
    assert r.zscore(DL, "x:0") == 40.0 and r.zscore(DL, "z:1") == 3.0
    assert run(r, "claim_deadlines", [DL], ["10.0", "40.0", 100]) == ["z:1"]
    assert run(r, "claim_deadlines", [DL], ["10.0", "40.0", 100]) == []


# -- the store's typed outcomes of those replies -------------------------------------------------
@pytest.fixture()
def store(r: redis.Redis) -> AssignmentStore:
    return AssignmentStore(r, Keys("t"), ttl=60)


def result(index: int, status: str = "ok") -> IterationResult:
    return IterationResult(index=index, status=status, started_at=1.0, finished_at=2.0)  # type: ignore[arg-type]


def test_the_deadline_members_the_scripts_build_are_the_keys_module_s(store: AssignmentStore) -> None:
    store.create("x", "alice", {})
    store.mark_running("x", "alice", [1], {}, 1.0)
    store.complete_iteration("x", result(0, "ok"), 2.0)
    assert store.redis.zrange(store.keys.deadlines, 0, -1) == [deadline_member("x", 1)]
    assert parse_deadline_member(deadline_member("a:b", 7)) == ("a:b", 7)
    assert parse_deadline_member("no-index:") is None


def test_mark_running_tells_each_outcome(store: AssignmentStore) -> None:
    assert store.mark_running("x", "alice", [1], {}, 1.0) is Start.MISSING
    store.create("x", "alice", {})
    assert store.mark_running("x", "mallory", [1], {}, 1.0) is Start.NOT_OWNER
    assert store.mark_running("x", "alice", [1], {}, 1.0) is Start.STARTED
    assert store.mark_running("x", "alice", [1], {}, 1.0) is Start.NOT_PENDING


def test_complete_iteration_tells_each_outcome(store: AssignmentStore) -> None:
    store.create("x", "alice", {})
    store.mark_running("x", "alice", [1], {}, 1.0)
    ok, failed = result(0), result(1, "failed")
    assert store.complete_iteration("x", ok, 2.0) is Completion.ADVANCED
    assert store.complete_iteration("x", ok, 2.0) is Completion.ALREADY_STORED
    assert store.complete_iteration("x", failed, None) is Completion.DONE
    assert store.complete_iteration("x", result(5, "ok"), None) is Completion.STORED
    store.create("y", "alice", {})
    store.mark_running("y", "alice", [1], {}, 1.0)
    assert store.complete_iteration("y", result(0, "failed"), None) is Completion.FAILED


def test_claim_redispatch_tells_each_outcome(store: AssignmentStore) -> None:
    store.create("x", "alice", {})
    store.mark_running("x", "alice", [1], {}, 1.0)
    assert store.claim_redispatch("x", 0, 5.0, max_tries=1) is Redispatch.CLAIMED
    assert store.claim_redispatch("x", 0, 5.0, max_tries=1) is Redispatch.GAVE_UP
    store.mark_sent("x", 0)
    assert store.claim_redispatch("x", 0, 5.0) is Redispatch.NOTHING_TO_DO


def test_finish_tells_whether_it_ended_it_and_which_iteration_ran(store: AssignmentStore) -> None:
    store.create("x", "alice", {})
    ended = store.finish("x", "cancelled")  # pending: no iteration ran
    assert (ended.outcome, ended.iteration) == (Finish.ENDED, None)
    ended = store.finish("y", "cancelled")
    assert (ended.outcome, ended.iteration) == (Finish.ALREADY_ENDED, None)
    store.create("z", "alice", {})
    store.mark_running("z", "alice", [1], {}, 1.0)
    ended = store.finish("z", "failed", "boom")
    assert (ended.outcome, ended.iteration) == (Finish.ENDED, 0)
    assert store.finish("z", "cancelled").outcome is Finish.ALREADY_ENDED
    assert json.loads(json.dumps(Finish.ENDED)) == "ended"  # an outcome is its string
