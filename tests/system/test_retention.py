"""Data retention: what an assignment leaves in Redis expires on the documented schedule,
and its owner can purge it at once (``Oodida.purge``, ``oodida purge ID``).

Schedule (README, "Data retention"): Celery's task results and chord counters
``OODIDA_RESULT_EXPIRES`` after they were written (Celery's 4-byte "chord done" marker: 5
minutes); an assignment's record, iterations and events ``OODIDA_ASSIGNMENT_TTL`` after it
ended. Short settings here: 3 s and 4 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from fault_kit import fault_settings, wait_for

from oodida_cloud.purge import SWEEP_GRACE
from oodida_core.protocol.errors import OodidaError, UnknownAssignment
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

pytestmark = pytest.mark.slow

TIMEOUT = 10
SPEC = {
    "name": "kept for a while",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "average",
    "offboard": "collect",
    "frequency": 1,
    "samples": 10,
    "iterations": 2,
    "timeout": TIMEOUT,
}


def _keys_of(client: redis.Redis, aid: str) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(f"*{aid}*", count=1000))


def _last_dispatched(o: Oodida, aid: str) -> tuple[int, float]:
    """The index of an ended assignment's last dispatched iteration and when it started."""
    current, started = o.redis.hmget(o.keys.assignment(aid), ["current", "current_started"])
    return int(current or -1), float(started or 0)


def _not_of_iteration(keys: list[str], aid: str, index: int) -> list[str]:
    """``keys`` but the Celery keys of iteration ``index``: what its tasks write when they answer
    after a purge (their results, the chord's join keys)."""
    results, chord = f"celery-task-meta-{aid}-i{index}-c", f"celery-taskset-meta-{aid}-i{index}"
    return [k for k in keys if not (k.startswith((results, chord + ".")) or k == chord)]


def _sweeps_of(o: Oodida, aid: str) -> list[str]:
    """The members of the purge sweeps that name ``aid``."""
    return [
        m.decode() for m in o.redis.zrange(o.keys.purge_sweeps, 0, -1) if m.decode().startswith(f"{aid}:")
    ]


def test_results_and_chord_keys_expire_on_schedule(tmp_path: Path) -> None:
    settings = fault_settings(result_expires=3, assignment_ttl=4)
    with (
        LocalSystem(3, data_dir=tmp_path / "expiry", settings=settings) as system,
        Oodida(system.url, user="tester", token=system.token("tester")) as o,
    ):
        a = o.submit(SPEC)
        assert a.wait(timeout=60, progress=False).status == "done"
        keys = _keys_of(o.redis, a.id)
        celery = [k for k in keys if k.startswith("celery-")]
        ours = [k for k in keys if not k.startswith("celery-")]
        assert len([k for k in celery if k.startswith("celery-task-meta-")]) == 6  # 2 iterations x 3
        assert sorted(ours) == sorted(o.keys.assignment_keys(a.id))
        markers = [k for k in celery if k.endswith(".c")]  # Celery's "chord done" marker
        assert len(markers) == 2
        for key in celery:
            assert 0 < o.redis.ttl(key) <= (300 if key in markers else 3), key
        for key in ours:
            assert 2 < o.redis.ttl(key) <= 4, key
        wait_for(lambda: _keys_of(o.redis, a.id) == markers, 10, "every key of the assignment expired")
        print(f"{len(celery) - 2} Celery and {len(ours)} OODIDA keys expired on schedule")
        with pytest.raises(UnknownAssignment):
            o.assignment(a.id)


def test_purge_removes_every_key_owner_only_and_refuses_a_running_assignment(system: LocalSystem) -> None:
    with (
        Oodida(system.url, user="purger", token=system.token("purger")) as o,
        Oodida(system.url, user="other", token=system.token("other")) as other,
    ):
        running = o.submit({**SPEC, "iterations": 0, "samples": 1, "timeout": 4})
        wait_for(lambda: running.record().iterations_done >= 1, 30, "a first iteration")
        with pytest.raises(UnknownAssignment):
            other.purge(running.id)  # not theirs
        with pytest.raises(OodidaError, match="is running: cancel it first"):
            o.purge(running.id)
        assert _keys_of(o.redis, running.id)  # refused: nothing deleted
        running.cancel()
        last, started = _last_dispatched(o, running.id)
        deleted = o.purge(running.id)
        assert deleted >= 3
        # Tasks of the last iteration may still answer (on a loaded machine): a second sweep,
        # once that iteration's deadline passed, deletes what they wrote.
        assert _not_of_iteration(_keys_of(o.redis, running.id), running.id, last) == []
        swept = started + 4 + SWEEP_GRACE + 30 - time.time()  # room for a loaded machine
        wait_for(lambda: not _sweeps_of(o, running.id), swept, "the second sweep")
        assert _keys_of(o.redis, running.id) == []
        assert running.id not in o.assignments()
        assert not o.redis.zscore(o.keys.deadlines, f"{running.id}:0")
        with pytest.raises(UnknownAssignment):
            o.assignment(running.id)
        with pytest.raises(UnknownAssignment):
            o.purge(running.id)  # once gone, it is unknown

        # The command line, on a finished assignment.
        done = o.submit(SPEC)
        assert done.wait(timeout=60, progress=False).status == "done"
        last, started = _last_dispatched(o, done.id)
        env = {
            **os.environ,
            "OODIDA_REDIS_URL": system.url,
            "OODIDA_USER": "purger",
            "OODIDA_TOKEN": system.token("purger"),
        }
        cli = [sys.executable, "-m", "oodida_user._cli", "purge", done.id]
        proc = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"{done.id}: purged" in proc.stdout
        assert _not_of_iteration(_keys_of(o.redis, done.id), done.id, last) == []
        swept = started + TIMEOUT + SWEEP_GRACE + 30 - time.time()
        wait_for(lambda: _keys_of(o.redis, done.id) == [], max(swept, 1), "nothing of it left")
        again = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert again.returncode != 0 and "no assignment" in again.stderr


def test_answers_that_arrive_after_a_purge_are_swept_once_their_iteration_is_over(tmp_path: Path) -> None:
    """A purge right after a cancel, while the last iteration's on-board task is still in the
    vehicle's hands: the vehicle (paused here, so that it surely answers after the purge)
    answers later, and the cloud's second sweep deletes what the answer wrote."""
    with (
        LocalSystem(1, data_dir=tmp_path / "late", realtime=True) as system,
        Oodida(system.url, user="late", token=system.token("late")) as o,
    ):
        # Real-time readings: each on-board task takes 3 s; an iteration's deadline is 8 s.
        a = o.submit({**SPEC, "iterations": 0, "samples": 3, "timeout": 8})
        wait_for(lambda: a.record().iterations_done >= 1, 60, "a first iteration")
        fleet = system.procs["fleet"]
        os.killpg(fleet.pid, signal.SIGSTOP)  # the next iteration's task: queued, or being read
        try:
            a.cancel()
            last, started = _last_dispatched(o, a.id)
            assert last >= 1
            assert o.purge(a.id) >= 3
            assert _keys_of(o.redis, a.id) == []
            [member] = _sweeps_of(o, a.id)
            assert o.redis.zscore(o.keys.purge_sweeps, member) == pytest.approx(
                started + 8 + SWEEP_GRACE, abs=0.01
            )
            assert 0 < o.redis.ttl(o.keys.purge_sweeps) <= 8 + SWEEP_GRACE + system.settings.result_expires
        finally:
            os.killpg(fleet.pid, signal.SIGCONT)
        answer = f"celery-task-meta-{a.id}-i{last}-c1"
        wait_for(lambda: answer in _keys_of(o.redis, a.id), 30, "the late answer")
        late = _keys_of(o.redis, a.id)
        print(f"written after the purge: {late}")  # the answer, and the chord's join keys
        assert _not_of_iteration(late, a.id, last) == []
        for key in late:  # without the sweep, they would live this long
            assert 0 < o.redis.ttl(key) <= system.settings.result_expires, key
        swept = started + 8 + SWEEP_GRACE + 30 - time.time()  # room for a loaded machine
        wait_for(lambda: _keys_of(o.redis, a.id) == [], swept, "the late keys swept")
        assert _sweeps_of(o, a.id) == []
