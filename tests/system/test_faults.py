"""Clients that die or answer late: the iteration ends at its deadline, the assignment goes on."""

from __future__ import annotations

import os
import signal
import time

import pytest

from oodida_core.local import LocalSystem
from oodida_user import Oodida

pytestmark = pytest.mark.slow

SPEC = {
    "name": "slow one",
    "mode": "measurement",
    "signals": "speed",
    "onboard": "average",
    "offboard": "collect",
}


def test_client_killed_mid_assignment_is_missing_after_the_timeout_and_the_next_iteration_runs(
    fresh_system: LocalSystem,
) -> None:
    # Client 9 is real-time: 20 readings at 10 Hz take it 2 s, so it can be killed mid-task.
    fresh_system.realtime = True
    victim = fresh_system.start_edge("victim", "9", processes=1)
    fresh_system.realtime = False
    with Oodida(fresh_system.url, user="tester", token=fresh_system.token("tester")) as o:
        deadline = time.monotonic() + 30
        while 9 not in {c.client_id for c in o.clients()}:
            assert time.monotonic() < deadline, "client 9 never came up"
            time.sleep(0.1)
        a = o.submit(
            {**SPEC, "clients": [1, 2, 3, 9], "frequency": 10, "samples": 20, "iterations": 3, "timeout": 4}
        )
        its = a.iterations(timeout=60)
        first = next(its)
        assert sorted(first.onboard) == [1, 2, 3, 9]  # 9 answered after 2 s, within the deadline
        time.sleep(0.5)  # iteration 1 is running; 9 is in the middle of its task
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        rest = list(its)
        # The chords that can never complete were closed: no counters linger until they expire.
        leftovers = [k for k in o.redis.scan_iter(f"celery-taskset-meta-{a.id}-*") if not k.endswith(b".c")]
        assert leftovers == []
    result = a.result()
    assert result.status == "done"
    assert [it.index for it in result.iterations] == [0, 1, 2]
    for it in result.iterations[1:]:
        assert it.missing == (9,)
        assert sorted(it.onboard) == [1, 2, 3]
        assert it.ended_by == "deadline"
        assert 3.5 < it.finished_at - it.started_at < 10
    assert [it.index for it in rest] == [1, 2]


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
