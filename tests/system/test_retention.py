"""Data retention: what an assignment leaves in Redis expires on the documented schedule,
and its owner can purge it at once (``Oodida.purge``, ``oodida purge ID``).

Schedule (README, "Data retention"): Celery's task results and chord counters
``OODIDA_RESULT_EXPIRES`` after they were written (Celery's 4-byte "chord done" marker: 5
minutes); an assignment's record, iterations and events ``OODIDA_ASSIGNMENT_TTL`` after it
ended. Short settings here: 3 s and 4 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from fault_kit import fault_settings, wait_for

from oodida_core.protocol.errors import OodidaError, UnknownAssignment
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

pytestmark = pytest.mark.slow

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
    "timeout": 10,
}


def _keys_of(client: redis.Redis, aid: str) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(f"*{aid}*", count=1000))


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
        running = o.submit({**SPEC, "iterations": 0, "samples": 1})
        wait_for(lambda: running.record().iterations_done >= 1, 30, "a first iteration")
        with pytest.raises(UnknownAssignment):
            other.purge(running.id)  # not theirs
        with pytest.raises(OodidaError, match="is running: cancel it first"):
            o.purge(running.id)
        assert _keys_of(o.redis, running.id)  # refused: nothing deleted
        running.cancel()
        deleted = o.purge(running.id)
        assert deleted >= 3
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
        assert _keys_of(o.redis, done.id) == []
        again = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert again.returncode != 0 and "no assignment" in again.stderr
