"""Clients that die or answer late: the iteration ends at its deadline, the assignment goes on,
a client that comes back serves the next iteration, and nothing is aggregated twice."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import redis
from fault_kit import (
    REPEATS,
    end_events,
    fault_rng,
    fault_settings,
    iteration_events,
    kill,
    wait_live,
)

from oodida_core.protocol.wire import OnboardResult, decode
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

__all__ = ["fault_rng"]  # a fixture

pytestmark = pytest.mark.slow

SPEC = {
    "name": "slow one",
    "mode": "measurement",
    "signals": "speed",
    "onboard": "average",
    "offboard": "collect",
}


def test_client_killed_mid_task_at_random_moments_is_missing_then_serves_the_next_iteration(
    tmp_path: Path, fault_rng: random.Random
) -> None:
    """Client 9 (real-time: 10 readings at 10 Hz take it 1 s) is killed at a random moment of
    its task, REPEATS times: that iteration ends at its deadline with 9 missing, the assignment
    goes on; 9 restarted serves the next iteration; its killed task is lost, not redelivered
    (edges take tasks without ack emulation, so that no vehicle touches kombu's shared
    ``unacked`` structures) and nothing is aggregated twice."""
    system = LocalSystem(3, data_dir=tmp_path / "edge", settings=fault_settings())
    with system, Oodida(system.url, user="tester", token=system.token("tester")) as o:
        killed: list[tuple[str, int]] = []
        system.realtime = True
        system.start_edge("victim", "9", processes=1)  # the one that comes back serves the next rep
        system.realtime = False
        for rep in range(REPEATS):
            wait_live(o, [9])
            spec = {**SPEC, "clients": [1, 2, 3, 9], "frequency": 10, "samples": 10}
            a = o.submit({**spec, "iterations": 2, "timeout": 5})
            moment = fault_rng.uniform(0.1, 0.9)
            time.sleep(moment)  # client 9 is reading its 10 samples
            answered = {r.client_id for r in _answers(system, a.id, 0)}
            kill(system, "victim")
            its = a.iterations(timeout=60)
            first = next(its)
            system.realtime = True
            system.start_edge("victim", "9", processes=1)  # back, for the next iteration
            system.realtime = False
            rest = list(its)
            result = a.result()
            print(f"rep {rep}: killed {moment:.2f}s into iteration 0 (9 had answered: {9 in answered})")
            assert result.status == "done"
            assert [it.index for it in [first, *rest]] == [0, 1]
            assert sorted(first.onboard) == [1, 2, 3]
            assert first.missing == (9,) and first.ended_by == "deadline"
            assert 4.5 < first.finished_at - first.started_at < 12
            assert sorted(result.iterations[1].onboard) == [1, 2, 3, 9], "9 did not serve after its comeback"
            killed.append((a.id, rep))
        # No killed task comes back, even after the visibility timeout: nothing was aggregated
        # twice, no result changed.
        time.sleep(2 * system.settings.visibility_timeout)
        for aid, _rep in killed:
            assert _answer_of(system, aid, 0, 9) is None
            assert iteration_events(o, aid) == [0, 1]
            assert end_events(o, aid) == ["done"]
            assert o.assignment(aid).result().iterations[0].missing == (9,)
        leftovers = [k for k in o.redis.scan_iter("celery-taskset-meta-*") if not k.endswith(b".c")]
        assert leftovers == []  # chords that could not complete were closed


def _answer_of(system: LocalSystem, aid: str, index: int, client: int) -> OnboardResult | None:
    client_redis = redis.Redis.from_url(system.url)
    try:
        raw = client_redis.get(f"celery-task-meta-{aid}-i{index}-c{client}")
    finally:
        client_redis.close()
    if raw is None:
        return None
    return decode(OnboardResult, json.loads(raw)["result"])


def _answers(system: LocalSystem, aid: str, index: int) -> list[OnboardResult]:
    found = [_answer_of(system, aid, index, c) for c in (1, 2, 3, 9)]
    return [r for r in found if r is not None]


def test_a_late_answer_never_triggers_a_second_aggregation(fresh_system: LocalSystem) -> None:
    fresh_system.realtime = True
    fresh_system.start_edge("slowpoke", "8", processes=1)  # 30 readings at 10 Hz: 3 s a task
    fresh_system.realtime = False
    with Oodida(fresh_system.url, user="tester", token=fresh_system.token("tester")) as o:
        deadline = time.monotonic() + 30
        while 8 not in {c.client_id for c in o.clients()}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        a = o.submit(
            {**SPEC, "clients": [1, 8], "frequency": 10, "samples": 30, "iterations": 2, "timeout": 1}
        )
        result = a.wait(timeout=60)
        assert result.status == "done"
        assert [it.missing for it in result.iterations] == [(8,), (8,)]
        time.sleep(7)  # both late answers from client 8 have arrived by now
        events = o.store.read_events(a.id)
        assert [e["index"] for _, e in events if e["type"] == "iteration"] == ["0", "1"]
        assert [e["status"] for _, e in events if e["type"] == "end"] == ["done"]
        again = a.result()
        assert again.iterations == result.iterations
