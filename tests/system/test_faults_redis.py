"""The Redis server killed (SIGKILL) and restarted at random moments, with append-only
persistence on (fsync every second): deployed code, finished results and the registry
survive; the assignment that was running continues or ends with a clear ``failed`` status,
never hangs; workers and the library reconnect on their own, with no restart.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from fault_kit import (
    REPEATS,
    fault_rng,
    fault_settings,
    kill_redis,
    restart_redis,
    wait_for,
    wait_live,
)

from oodida_ops.local import LocalSystem
from oodida_user import Oodida

pytestmark = pytest.mark.slow
__all__ = ["fault_rng"]  # a fixture

MODULE = """
def custom_code(x):
    return round(sum(x) / len(x), 3)
"""

CUSTOM = {
    "name": "custom before the faults",
    "mode": "measurement",
    "clients": [1, 2, 3],
    "signals": "speed",
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 10,
    "samples": 10,
    "iterations": 1,
    "timeout": 10,
}

# Real-time clients: 20 readings at 10 Hz take 2 s, so this runs for about 16 s.
RUNNING = {**CUSTOM, "name": "running through the faults", "onboard": "average", "samples": 20}
RUNNING_ITERATIONS = 8


def test_redis_killed_and_restarted_at_random_moments(tmp_path: Path, fault_rng: random.Random) -> None:
    system = LocalSystem(3, data_dir=tmp_path / "redis", realtime=True, settings=fault_settings())
    with system, Oodida(system.url, user="tester", token=system.token("tester")) as o:
        module = tmp_path / "mean.py"
        module.write_text(MODULE)
        report = o.deploy_onboard(module, clients=[1, 2, 3]).wait(timeout=60)
        assert sorted(report.accepted) == [1, 2, 3]
        finished = o.submit(CUSTOM).wait(timeout=60, progress=False)
        assert finished.status == "done"
        time.sleep(1.5)  # appendfsync everysec: what is a second old is on disk
        running = o.submit({**RUNNING, "iterations": RUNNING_ITERATIONS, "timeout": 5})

        started = time.monotonic()
        for rep in range(REPEATS):
            time.sleep(fault_rng.uniform(0.5, 3.0))
            port = kill_redis(system)
            down = fault_rng.uniform(0.2, 1.5)
            time.sleep(down)
            restart_redis(system, port)
            print(f"rep {rep}: Redis killed at {time.monotonic() - started - down:.1f}s, down {down:.1f}s")

        # The running assignment continues, or ends with a clear failure; it never hangs.
        result = running.wait(timeout=120, progress=False)
        print(f"running assignment: {result.status}, {result.totals()}")
        if result.status == "failed":
            assert running.record().error, "failed without saying why"
        else:
            assert result.status == "done"
            assert [it.index for it in result.iterations] == list(range(RUNNING_ITERATIONS))
        for it in result.iterations:  # every client accounted for in every iteration
            assert len(it.onboard) + len(it.discarded) + len(it.missing) + len(it.failed) == 3

        # What was done before the faults survived.
        assert o.assignment(finished.id).result().iterations == finished.iterations
        assert o.code_versions([1, 2, 3])["onboard"] == dict.fromkeys([1, 2, 3], report.version)
        wait_live(o, [1, 2, 3])  # the registry (re-registered by the heartbeats if it was lost)
        # Every worker reconnected on its own: none exited, and a new assignment runs through
        # the same library object.
        assert {name: p.poll() for name, p in system.procs.items()} == dict.fromkeys(system.procs)
        after = wait_for(lambda: o.submit(CUSTOM), 60, "a submit after the restarts")
        again = after.wait(timeout=60, progress=False)
        assert again.status == "done"
        assert sorted(again.iterations[0].onboard) == [1, 2, 3]
        assert set(again.iterations[0].versions.values()) == {report.version}
