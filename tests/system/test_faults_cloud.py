"""Cloud workers killed while they aggregate an iteration (SIGKILL, at random moments).

With a second cloud worker running, it takes over: the killed worker's chord callback comes
back after the visibility timeout, or the iteration's deadline fires there first. With no other
cloud worker, a restarted one does the same. Either way each iteration is stored exactly once
(one Lua script decides), the assignment finishes, nothing is lost or duplicated.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import pytest
import redis
from fault_kit import REPEATS, end_events, fault_rng, fault_settings, iteration_events, kill, wait_for

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import TASK_FINISH_ITERATION
from oodida_core.spec.model import spec_to_wire, validate_spec
from oodida_core.state.chords import answered
from oodida_core.state.store import AssignmentStore, Start
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

pytestmark = pytest.mark.slow
__all__ = ["fault_rng"]  # a fixture

# An off-board step that takes a moment (a few million additions in the sandbox), so that a
# cloud worker can be killed in the middle of it.
SLOW_OFFBOARD = """
def custom_code(x):
    total = 0
    for i in range(10000000):
        total += i % 7
    return {"clients": len(x), "spin": total}
"""

SPEC = {
    "name": "aggregated once",
    "mode": "measurement",
    "clients": [1, 2, 3],
    "signals": "speed",
    "onboard": "average",
    "offboard": "custom",
    "frequency": 1,
    "samples": 50,
    "iterations": 2,
    "timeout": 5,
}


@pytest.fixture()
def cloud_system(tmp_path: Path) -> LocalSystem:
    return LocalSystem(3, data_dir=tmp_path / "cloud", cloud_workers=2, settings=fault_settings())


def _aggregator(system: LocalSystem, aid: str) -> str | None:
    """The name of the cloud process running the finish task of ``aid`` right now, if any."""
    app = make_celery_app(system.settings, "fault-test")
    try:
        clouds = sum(1 for name in system.procs if name.startswith("cloud"))
        active = app.control.inspect(timeout=1.0, limit=clouds).active() or {}
    finally:
        app.close()
    for node, tasks in active.items():
        for task in tasks:
            if task.get("name") == TASK_FINISH_ITERATION and aid in str(task.get("kwargs")):
                return str(node).split("@", 1)[0]
    return None


def _kill_during_aggregation(
    system: LocalSystem, o: Oodida, aid: str, rng: random.Random
) -> tuple[str | None, bool]:
    """Wait until iteration 0's chord closed, then kill, at a random moment, the cloud worker
    aggregating it: (its name, whether iteration 0 was still unstored when it died)."""
    wait_for(lambda: answered(o.app, o.redis, aid, 0) is None, 30, "iteration 0's answers")
    time.sleep(rng.uniform(0.0, 0.3))
    name = None
    deadline = time.monotonic() + 10
    while name is None and time.monotonic() < deadline and not o.store.has_iteration(aid, 0):
        name = _aggregator(system, aid)
    if name is None:
        return None, False
    kill(system, name)
    return name, not o.store.has_iteration(aid, 0)


def _check_exactly_once(o: Oodida, aid: str) -> None:
    result = o.assignment(aid).wait(timeout=90, progress=False)
    assert result.status == "done", result.status
    assert [it.index for it in result.iterations] == [0, 1]
    assert iteration_events(o, aid) == [0, 1]  # each iteration stored (and announced) once
    assert end_events(o, aid) == ["done"]
    for it in result.iterations:
        assert sorted(it.onboard) == [1, 2, 3], it  # no answer lost
        assert it.missing == () and it.failed == {} and it.error is None
        assert it.value["clients"] == 3


def test_cloud_worker_killed_during_aggregation_with_a_second_one_running(
    cloud_system: LocalSystem, tmp_path: Path, fault_rng: random.Random
) -> None:
    module = tmp_path / "slow_offboard.py"
    module.write_text(SLOW_OFFBOARD)
    hits = 0
    with cloud_system as system, Oodida(system.url, user="tester", token=system.token("tester")) as o:
        o.deploy_offboard(module).wait(timeout=60)
        for rep in range(REPEATS):
            a = o.submit(SPEC)
            victim, hit = _kill_during_aggregation(system, o, a.id, fault_rng)
            hits += hit
            print(f"rep {rep}: killed {victim} (during aggregation: {hit})")
            if victim is not None:
                system.start_cloud(f"{victim}-r{rep}")  # two cloud workers again, for the next rep
            _check_exactly_once(o, a.id)
    print(f"{hits} of {REPEATS} kills landed in the middle of an aggregation")
    assert hits >= 1


def test_only_cloud_worker_killed_during_aggregation_and_restarted(
    cloud_system: LocalSystem, tmp_path: Path, fault_rng: random.Random
) -> None:
    module = tmp_path / "slow_offboard.py"
    module.write_text(SLOW_OFFBOARD)
    hits = 0
    with cloud_system as system, Oodida(system.url, user="tester", token=system.token("tester")) as o:
        o.deploy_offboard(module).wait(timeout=60)
        system.stop_process("cloud-2")  # from here on, one cloud worker at a time
        for rep in range(REPEATS):
            a = o.submit(SPEC)
            victim, hit = _kill_during_aggregation(system, o, a.id, fault_rng)
            hits += hit
            down = fault_rng.uniform(0.5, 2.0)
            print(f"rep {rep}: killed {victim} (during aggregation: {hit}), restarted {down:.1f}s later")
            time.sleep(down)
            if victim is not None:
                system.start_cloud(f"cloud-r{rep}")
            _check_exactly_once(o, a.id)
    print(f"{hits} of {REPEATS} kills landed in the middle of an aggregation")
    assert hits >= 1


def test_an_iteration_whose_chord_was_never_sent_is_sent_at_its_deadline(tmp_path: Path) -> None:
    """The state a cloud worker leaves when it dies between planning an iteration and
    publishing its chord: the assignment is running, its deadline armed, no task sent. At the
    deadline a cloud worker sends the chord (once) with a fresh deadline."""
    with LocalSystem(3, data_dir=tmp_path / "unsent", settings=fault_settings()) as system:
        admin = redis.Redis.from_url(system.url)
        store = AssignmentStore(admin, Keys(system.settings.key_prefix))
        spec = spec_to_wire(validate_spec({**SPEC, "offboard": "collect", "timeout": 2}))
        aid = f"unsent{socket.gethostname()[:4]}{int(time.time())}".replace("-", "")[:30]
        assert store.create(aid, "tester", spec)
        assert store.mark_running(aid, "tester", [1, 2, 3], spec, time.time() + 2) is Start.STARTED
        admin.close()
        with Oodida(system.url, user="tester", token=system.token("tester")) as o:
            result = o.assignment(aid).wait(timeout=60, progress=False)
            assert result.status == "done"
            assert [sorted(it.onboard) for it in result.iterations] == [[1, 2, 3], [1, 2, 3]]
            assert iteration_events(o, aid) == [0, 1]
            assert result.iterations[1].value == result.iterations[1].onboard
