"""A purge's second sweep (``oodida_cloud/purge.py``, ``oodida_core/state/sweeps.py``), against
a real Redis: a purge made while tasks of the assignment may still answer schedules a sweep
for its last iteration's deadline plus a grace; the sweep deletes Celery's keys of the
assignment written after the purge, once, and leaves nothing behind."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from oodida_cloud.outcomes import Outcome
from oodida_cloud.purge import SWEEP_GRACE, Sweep, plan_sweep
from oodida_cloud.root import Cloud, build_cloud
from oodida_core.customcode.sandbox import Sandbox
from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.keys import chord_group_id, header_task_id, parse_sweep_member, sweep_member
from oodida_core.protocol.wire import TASK_PURGE
from oodida_core.security.auth import UserStore
from oodida_core.settings import Settings
from oodida_core.state.lua import load
from oodida_ops.redis_server import EmbeddedRedis

SPEC = {"mode": "stream", "signals": ["speed"], "onboard": "mean", "iterations": 0, "timeout": 60}


# -- the pure parts ------------------------------------------------------------------------------
def test_a_sweep_member_names_the_assignment_its_iterations_and_its_clients_as_ranges() -> None:
    member = sweep_member("b84ce4330b104aaa", 3, 5, [5, 1, 2, 3, 9])
    assert member == "b84ce4330b104aaa:3:5:1-3,5,9"
    assert parse_sweep_member(member) == ("b84ce4330b104aaa", 3, 5, [1, 2, 3, 5, 9])
    assert parse_sweep_member(sweep_member("a:b", 0, 0, [7])) == ("a:b", 0, 0, [7])


@pytest.mark.parametrize(
    "member",
    ["", "x", "x:1", "x:0:1", ":0:1:1-3", "x:0::1", "x::1:1", "x:-1:1:1", "x:2:1:1", "x:0:1:", "x:0:1:0"],
)
def test_a_malformed_sweep_member_is_none(member: str) -> None:
    assert parse_sweep_member(member) is None


def raw(started: float | None, current: int = 3, spec: dict[str, Any] | None = None) -> dict[str, str]:
    record = {"spec": json.dumps(spec if spec is not None else SPEC), "current": str(current)}
    if started is not None:
        record["current_started"] = repr(started)
    return record


def test_a_sweep_is_due_a_grace_after_the_last_iterations_deadline_and_covers_it() -> None:
    assert plan_sweep(raw(100.0), [], 110.0, 5.0, 30.0) == Sweep(100.0 + 60 + 5, 3)
    # A custom call started before a deadline runs on: here the previous iteration's too.
    custom = raw(100.0, spec={**SPEC, "onboard": "custom"})
    assert plan_sweep(custom, [], 110.0, 5.0, 30.0) == Sweep(100.0 + 60 + 5 + 30, 2)


def test_a_sweep_covers_the_iteration_that_ended_at_its_deadline_less_than_a_grace_ago() -> None:
    # Iteration 3 started at 100 (iteration 2 ended then); 1 and 2 started long before.
    started = [(0, 1.0), (1, 20.0), (2, 40.0), (3, 100.0)]
    assert plan_sweep(raw(100.0), started, 103.0, 5.0, 30.0) == Sweep(165.0, 2)  # 2's tasks may answer
    assert plan_sweep(raw(100.0), started, 106.0, 5.0, 30.0) == Sweep(165.0, 3)  # they cannot any more
    # Iterations 2 and 3 completed within the grace: 1's deadline was less than a grace ago.
    quick = [(1, 90.0), (2, 97.0), (3, 100.0)]
    assert plan_sweep(raw(100.0), quick, 100.5, 5.0, 30.0) == Sweep(165.0, 1)
    # Not stored (folded, or the cancel did not store it): the record's start of the current one.
    assert plan_sweep(raw(100.0), [], 103.0, 5.0, 30.0) == Sweep(165.0, 2)
    assert plan_sweep(raw(100.0), [], 106.0, 5.0, 30.0) == Sweep(165.0, 3)
    # Iteration 0 has nothing before it.
    assert plan_sweep(raw(100.0, current=0), [(0, 100.0)], 101.0, 5.0, 30.0) == Sweep(165.0, 0)


def test_no_sweep_once_the_last_iterations_tasks_cannot_answer() -> None:
    assert plan_sweep(raw(100.0), [], 165.0, 5.0, 30.0) is None
    assert plan_sweep(raw(100.0), [], 164.9, 5.0, 30.0) is not None


@pytest.mark.parametrize(
    "record",
    [
        raw(None),  # never started: no task was sent
        {"current_started": "nope", "spec": json.dumps(SPEC)},
        raw(100.0, spec={"mode": "stream"}),  # no timeout
        raw(100.0, spec={**SPEC, "timeout": "soon"}),
        {"current_started": "100.0", "spec": "{not json"},
        {"current_started": "100.0", "spec": "[1]"},
        {"current_started": "100.0"},
        {**raw(100.0), "current": "x"},
    ],
)
def test_no_sweep_without_a_dispatched_iteration_or_a_timeout(record: dict[str, str]) -> None:
    assert plan_sweep(record, [], 101.0, 5.0, 30.0) is None


# -- against Redis -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("sweeps")) as srv:
        yield srv


@pytest.fixture(scope="module")
def cloud(server: EmbeddedRedis) -> Iterator[Cloud]:
    settings = Settings.from_env({}, redis_url=server.url, result_expires=3600)
    client = redis.Redis.from_url(server.url)
    sandbox = Sandbox(max_children=1)
    try:
        yield build_cloud(make_celery_app(settings, "oodida-cloud"), client, settings, sandbox=sandbox)
    finally:
        sandbox.close()
        client.close()


@pytest.fixture()
def token(cloud: Cloud) -> str:
    cloud.redis.flushdb()
    return UserStore(cloud.redis, cloud.keys).add("alice")


def cancelled(cloud: Cloud, aid: str, started: float | None = None) -> None:
    """A cancelled assignment of alice on clients 1 and 2 whose iteration 0 started at
    ``started`` (now, when None)."""
    cloud.store.create(aid, "alice", SPEC)
    cloud.store.mark_running(aid, "alice", [1, 2], SPEC, time.time() + 60)
    if started is not None:
        cloud.redis.hset(cloud.keys.assignment(aid), "current_started", repr(started))
    cloud.store.finish(aid, "cancelled")


def purge(cloud: Cloud, token: str, aid: str) -> int:
    message = {"user": "alice", "token": token, "request_id": "q1", "assignment_id": aid}
    route = next(r for r in cloud.routes if r.task == TASK_PURGE)
    assert cloud.dispatcher(route, (message,), {}, "t-1") is Outcome.PURGED
    entries: Any = cloud.redis.xrange(cloud.keys.reply("q1"))
    return int(json.loads(entries[0][1][b"reply"])["value"]["deleted"])


def late_keys(cloud: Cloud, aid: str) -> list[str]:
    """Write what a task of iteration 0 on client 1 writes when it answers after the purge."""
    backend: Any = cloud.app.backend
    keys = [
        backend.get_key_for_task(header_task_id(aid, 0, 1)),
        backend.get_key_for_group(chord_group_id(aid, 0), ".j"),
        backend.get_key_for_group(chord_group_id(aid, 0), ".d"),
    ]
    keys = [k.decode() if isinstance(k, bytes) else k for k in keys]
    for key in keys:
        cloud.redis.set(key, "late", ex=3600)
    return keys


def members(cloud: Cloud) -> dict[str, float]:
    found: Any = cloud.redis.zrange(cloud.keys.purge_sweeps, 0, -1, withscores=True)
    return {m.decode(): score for m, score in found}


def test_a_purge_during_an_iteration_schedules_one_sweep_that_deletes_the_late_keys(
    cloud: Cloud, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    cancelled(cloud, "a1")
    started = float(cloud.store.raw("a1")["current_started"])
    assert purge(cloud, token, "a1") >= 3  # the reply still counts what it deleted
    assert members(cloud) == {"a1:0:1:1-2": pytest.approx(started + 60 + SWEEP_GRACE, abs=0.01)}
    assert 3600 < cloud.redis.ttl(cloud.keys.purge_sweeps) <= 3600 + 60 + SWEEP_GRACE + 1
    late = late_keys(cloud, "a1")
    assert cloud.purger.sweep_due() == 0  # not due yet
    assert all(cloud.redis.exists(k) for k in late)
    cloud.redis.zadd(cloud.keys.purge_sweeps, {"a1:0:1:1-2": time.time() - 1})  # now it is
    with caplog.at_level(logging.INFO, logger="oodida.cloud"):
        assert cloud.purger.sweep_due() == 1
    assert "purged assignment a1 swept again: 3 late keys deleted" in caplog.messages
    assert not any(cloud.redis.exists(k) for k in late)
    assert members(cloud) == {}
    assert not cloud.redis.exists(cloud.keys.purge_sweeps)  # an empty set is no key
    assert cloud.purger.sweep_due() == 0
    assert [k.decode() for k in cloud.redis.scan_iter("*a1*")] == []


def test_a_purge_after_the_last_deadline_and_its_grace_schedules_no_sweep(cloud: Cloud, token: str) -> None:
    cancelled(cloud, "a2", started=time.time() - 60 - SWEEP_GRACE - 1)
    assert purge(cloud, token, "a2") >= 3
    assert members(cloud) == {}


def test_a_due_sweep_is_swept_by_one_caller_only(cloud: Cloud, token: str) -> None:
    cloud.purger.sweeps.schedule("a3:0:1:1", time.time() - 1)
    assert cloud.purger.sweeps.due() == ["a3:0:1:1"]
    assert cloud.purger.sweeps.take("a3:0:1:1")
    assert not cloud.purger.sweeps.take("a3:0:1:1")  # another cloud worker: it does not sweep
    assert cloud.purger.sweep_due() == 0


def test_a_malformed_sweep_is_dropped(cloud: Cloud, token: str, caplog: pytest.LogCaptureFixture) -> None:
    cloud.redis.zadd(cloud.keys.purge_sweeps, {"nonsense": 1.0})
    with caplog.at_level(logging.WARNING, logger="oodida.cloud"):
        assert cloud.purger.sweep_due() == 0
    assert caplog.messages == ["dropped a malformed purge sweep 'nonsense'"]
    assert members(cloud) == {}


def test_schedule_sweep_adds_the_member_and_only_lengthens_the_sets_life(cloud: Cloud, token: str) -> None:
    script = cloud.redis.register_script(load("schedule_sweep"))
    assert script(keys=["sweeps"], args=["10.5", "a:1:1", 100]) == 100
    assert script(keys=["sweeps"], args=["20.5", "b:1:1", 50]) > 50  # kept the longer life
    assert 50 < cloud.redis.ttl("sweeps") <= 100
    assert script(keys=["sweeps"], args=["30.5", "a:1:1", 500]) == 500  # moved, and longer
    found: Any = cloud.redis.zrange("sweeps", 0, -1, withscores=True)
    assert found == [(b"b:1:1", 20.5), (b"a:1:1", 30.5)]
