"""Canary deployments on a live simulated fleet: a module that fails on some vehicles is rolled
back on the canary and never reaches the others, a healthy one is promoted, within one run of
the same processes; a vehicle offline during the canary gets the outcome when it returns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import redis
from fault_kit import fault_settings, kill, wait_for, wait_gone, wait_live

from oodida_core.customcode.check import CodePolicy, check_source
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import InstallTask
from oodida_core.state.codestore import CodeStore
from oodida_edge.install import Installer
from oodida_ops.local import LocalSystem
from oodida_ops.redis_server import EmbeddedRedis
from oodida_user import Oodida
from oodida_user.canary_rules import CanaryReport, Guard, canary_size, pick_canary

pytestmark = pytest.mark.slow

MEAN = """
def custom_code(x):
    return sum(x) / len(x)
"""
# The same figures as MEAN, another version (the text differs).
MEAN_TOO = """
def custom_code(x):
    # a refactoring: the same mean
    total = 0.0
    for v in x:
        total += v
    return total / len(x)
"""
# Fails where the vehicle's alternator charges below 14.05 V (client 1 of the simulated fleet,
# on every drive; clients 2, 4 and 5 on some), answers the mean elsewhere.
FAILS_ON_LOW_VOLTAGE = """
def custom_code(x):
    if max(x) < 14.05:
        raise ValueError("battery voltage under 14.05 V: cannot calibrate")
    return sum(x) / len(x)
"""
# Off by half everywhere: computes, never fails.
SCALED = """
def custom_code(x):
    return 1.5 * sum(x) / len(x)
"""
# Passes the dry run (100 numbers) and fails on every vehicle (GUARD_SPEC reads 120 samples).
ALWAYS_FAILS = """
def custom_code(x):
    if len(x) != 100:
        raise RuntimeError("this build is broken")
    return 0.0
"""

# Vehicles differ: the mean battery voltage of one drive is 12.5-14.2 V. Half as much again
# (SCALED) is 6 V or more off.
TOLERANCE = 1.5
GUARD_SPEC = {
    "name": "canary guard",
    "mode": "measurement",
    "signals": ["battery_voltage"],
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 1,
    "samples": 120,
    "timeout": 20,
}


def _module(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def _seed_with(live: list[int], size: int, inside: int | None = None, outside: int | None = None) -> int:
    """A seed whose canary of ``size`` holds ``inside`` and leaves out ``outside``."""
    for seed in range(10_000):
        canary, _ = pick_canary(live, size, seed)
        if (inside is None or inside in canary) and (outside is None or outside not in canary):
            return seed
    raise AssertionError("no such seed")


def _guard(**rules: object) -> Guard:
    return Guard(spec=GUARD_SPEC, iterations=3, **rules)  # type: ignore[arg-type]


def test_failing_canary_is_rolled_back_and_healthy_one_promoted_in_one_run(tmp_path: Path) -> None:
    with LocalSystem(5, data_dir=tmp_path / "sys") as system:
        procs = dict(system.procs)
        with Oodida(system.url, user="tester", token=system.token("tester")) as o:
            wait_live(o, range(1, 6))
            base = o.deploy_onboard(_module(tmp_path, "mean.py", MEAN), clients="all").wait(timeout=60)
            assert sorted(base.accepted) == [1, 2, 3, 4, 5]
            live = [1, 2, 3, 4, 5]
            size = canary_size(0.4, 5)
            assert size == 2
            guard = _guard(max_failure_rate=0.0, metric=None, tolerance=TOLERANCE)

            # 1. fails on client 1 (its data), which the seed puts in the canary
            seed = _seed_with(live, size, inside=1)
            bad = _module(tmp_path, "fails.py", FAILS_ON_LOW_VOLTAGE)
            report = o.deploy_onboard(bad, clients="all", canary=0.4, guard=guard, seed=seed)
            print(report)
            assert isinstance(report, CanaryReport)
            assert report.outcome == "rolled_back" and not report.promoted
            assert 1 in report.canary and len(report.canary) == 2
            assert sorted(report.control) == sorted(set(live) - set(report.canary))
            assert report.seed == seed
            assert any(r.startswith("failure rate: FAIL") for r in report.reasons), report.reasons
            assert "ROLLED BACK" in str(report) and "calibrate" in str(report)
            assert set(report.guard_assignments) == {"canary", "others"}
            canary_run = o.assignment(report.guard_assignments["canary"]).result()
            assert 1 in canary_run.iterations[0].failed
            # back where they were, and the new code never reached the others
            assert o.code_versions(live)["onboard"] == dict.fromkeys(live, base.version)
            assert sorted(report.deploy_reports["canary"].accepted) == sorted(report.canary)
            assert "promotion" not in report.deploy_reports
            others_run = o.assignment(report.guard_assignments["others"]).result()
            assert set(others_run.iterations[0].versions.values()) == {base.version}

            # 2. computes something else: the metric's distance rolls it back
            scaled = _module(tmp_path, "scaled.py", SCALED)
            seed2 = _seed_with(live, size, outside=1)
            report = o.deploy_onboard(
                scaled, clients="all", canary=2, guard=_guard(tolerance=TOLERANCE), seed=seed2
            )
            print(report)
            assert report.outcome == "rolled_back"
            assert any(r.startswith("metric distance: FAIL") for r in report.reasons), report.reasons
            assert o.code_versions(live)["onboard"] == dict.fromkeys(live, base.version)

            # 3. healthy: the same figures by other code; promoted to every selected vehicle
            good = _module(tmp_path, "mean_too.py", MEAN_TOO)
            report = o.deploy_onboard(good, clients="all", canary=0.4, guard=guard, seed=seed2)
            print(report)
            assert report.outcome == "promoted", str(report)
            assert "PROMOTED" in str(report)
            assert o.code_versions(live)["onboard"] == dict.fromkeys(live, report.version)
            assert sorted(report.deploy_reports["promotion"].accepted) == sorted(report.control)
            assert report.now == dict.fromkeys(live, report.version)
        # nothing was restarted: the same worker processes throughout
        assert system.procs == procs and all(p.poll() is None for p in procs.values())


def test_first_deployment_compares_with_a_builtin_and_a_rollback_leaves_no_code(tmp_path: Path) -> None:
    with (
        LocalSystem(3, data_dir=tmp_path / "sys") as system,
        Oodida(system.url, user="fresh", token=system.token("fresh")) as o,
    ):
        wait_live(o, [1, 2, 3])
        # the others have no code of this user: they run the built-in average for the comparison
        guard = _guard(fallback="average", metric="battery_voltage", tolerance=TOLERANCE)
        report = o.deploy_onboard(
            _module(tmp_path, "broken.py", ALWAYS_FAILS), clients=[1, 2, 3], canary=1, guard=guard, seed=7
        )
        print(report)
        assert report.outcome == "rolled_back"
        assert set(report.guard_assignments) == {"canary", "others (builtin)"}
        assert o.code_versions([1, 2, 3])["onboard"] == {1: None, 2: None, 3: None}

        # a guard assignment the cloud refuses (no off-board code of this user): rolled back, said why
        refused = Guard(spec={**GUARD_SPEC, "offboard": "custom"}, iterations=1)
        mean = _module(tmp_path, "mean.py", MEAN)
        report = o.deploy_onboard(mean, clients="all", canary=1, guard=refused, seed=7)
        print(report)
        assert report.outcome == "rolled_back" and report.guard_assignments == {}
        assert "the guard could not run" in report.reasons[0] and "no off-board code" in report.reasons[0]
        assert o.code_versions([1, 2, 3])["onboard"] == {1: None, 2: None, 3: None}

        report = o.deploy_onboard(mean, clients="all", canary=1, guard=guard, seed=7)
        print(report)
        assert report.outcome == "promoted", str(report)
        assert any(r.startswith("metric distance: pass") for r in report.reasons)
        assert o.code_versions([1, 2, 3])["onboard"] == dict.fromkeys([1, 2, 3], report.version)


def test_vehicle_offline_during_the_canary_gets_the_outcome_when_it_returns(tmp_path: Path) -> None:
    with LocalSystem(3, data_dir=tmp_path / "sys", settings=fault_settings()) as system:
        system.start_edge("client-7", "7")
        with Oodida(system.url, user="tester", token=system.token("tester")) as o:
            wait_live(o, [1, 2, 3, 7])
            ids = [1, 2, 3, 7]
            base = o.deploy_onboard(_module(tmp_path, "mean.py", MEAN), clients=ids).wait(timeout=60)
            assert sorted(base.accepted) == ids
            spec = {**GUARD_SPEC, "timeout": 6}
            guard = Guard(spec=spec, iterations=2, max_failure_rate=0.0, timeout=90)

            # A canary vehicle stops once it installed the new code, during the guard; the
            # canary fails and is rolled back while 7 is offline.
            seed = _seed_with(ids, 2, inside=7)
            bad = _module(tmp_path, "broken.py", ALWAYS_FAILS)
            stopped = threading.Event()

            def stop_seven() -> None:
                history = o.code_versions([7])["onboard"][7]
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if o.code_versions([7])["onboard"][7] != history:
                        kill(system, "client-7")
                        stopped.set()
                        return
                    time.sleep(0.05)

            watcher = threading.Thread(target=stop_seven)
            watcher.start()
            report = o.deploy_onboard(bad, clients=ids, canary=2, guard=guard, seed=seed)
            watcher.join()
            print(report)
            assert stopped.is_set() and 7 in report.canary
            assert report.outcome == "rolled_back"
            wait_gone(o, [7])
            assert o.code_versions([7])["onboard"] == {7: base.version}  # undone while offline
            system.start_edge("client-7", "7")
            wait_live(o, [7])
            check = o.submit({**spec, "clients": [7], "iterations": 1}).wait(timeout=60, progress=False)
            assert check.iterations[0].versions == {7: base.version}

            # A vehicle offline during a promoted canary installs the promoted version when back.
            kill(system, "client-7")
            wait_gone(o, [7])
            good = _module(tmp_path, "mean_too.py", MEAN_TOO)
            report = o.deploy_onboard(good, clients=ids, canary=1, guard=guard, seed=seed, deploy_timeout=5)
            print(report)
            assert report.outcome == "promoted", str(report)
            assert 7 in report.control and 7 not in report.canary and 7 in report.pending
            assert o.code_versions([7])["onboard"] == {7: base.version}
            system.start_edge("client-7", "7")
            wait_live(o, [7])
            wait_for(lambda: o.code_versions([7])["onboard"][7] == report.version, 30, "7 installs it")
            check = o.submit({**spec, "clients": [7], "iterations": 1}).wait(timeout=60, progress=False)
            assert check.iterations[0].versions == {7: report.version}


def test_undo_withdraws_an_install_not_made_yet_and_pops_one_that_was(tmp_path: Path) -> None:
    """The cloud's half of a rollback, on a real Redis with a vehicle's installer: a vehicle
    that installed the canary's version is back at its previous one (none if it had none); one
    that was offline never installs it when it returns, neither from its pending list nor from
    the install message still queued for it."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        r = redis.Redis.from_url(server.url)
        store = CodeStore(r, Keys())
        policy = CodePolicy()
        old, new = (check_source(src, "m.py", policy) for src in (MEAN, MEAN_TOO))
        for checked in (old, new):
            store.put_source(checked.version, checked.source, "m.py")
        store.point_onboard("u", 7, old.version)
        tasks = [
            InstallTask(deploy_id="d1", user="u", client_id=c, version=new.version, filename="m.py")
            for c in (7, 8)
        ]
        store.create_deployment("d1", "u", "onboard", "m.py")
        store.deployment_sent("d1", new.version, [7, 8])
        store.add_pending(tasks)
        installer = Installer(store, policy, {7, 8})
        assert installer.install(tasks[1].to_wire())["accepted"] is True  # 8 is online
        assert store.onboard_version("u", 8) == new.version

        assert store.undo_install("u", "d1", new.version, 8) == ("rolled back", None)
        assert store.undo_install("u", "d1", new.version, 7) == ("withdrawn", old.version)
        assert store.onboard_version("u", 8) is None

        # 7 comes back: first its pending list, then the install message that waited in its queue
        assert installer.install_pending(7) == 0
        installer.install(tasks[0].to_wire())
        assert store.onboard_version("u", 7) == old.version
        assert store.history("u", 7) == [old.version]
        assert store.undo_install("u", "d1", new.version, 7)[0] == "untouched"  # twice is harmless
        record = store.deployment("d1")
        assert record is not None and not record.verdicts[7].accepted
        assert "withdrawn" in record.verdicts[7].reason
        r.close()


def test_cli_prints_the_report_and_exits_non_zero_when_rolled_back(tmp_path: Path) -> None:
    guard_file = tmp_path / "guard.json"
    guard_file.write_text(
        json.dumps({"spec": GUARD_SPEC, "iterations": 2, "max_failure_rate": 0.0, "tolerance": TOLERANCE})
    )
    with LocalSystem(3, data_dir=tmp_path / "sys") as system:
        env = {
            **os.environ,
            "OODIDA_REDIS_URL": system.url,
            "OODIDA_USER": "cli",
            "OODIDA_TOKEN": system.token("cli"),
        }

        def oodida(*args: str) -> subprocess.CompletedProcess[str]:
            cmd = [sys.executable, "-m", "oodida_user._cli", *args]
            return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

        with Oodida(system.url, user="cli", token=env["OODIDA_TOKEN"]) as o:
            wait_live(o, [1, 2, 3])
            base = o.deploy_onboard(_module(tmp_path, "mean.py", MEAN)).wait(timeout=60)
        canary = ["--canary", "1", "--guard", str(guard_file), "--seed", "3", "--clients", "1-3"]
        done = oodida("deploy", "onboard", str(_module(tmp_path, "scaled.py", SCALED)), *canary)
        assert done.returncode == 5, done.stderr
        assert "ROLLED BACK" in done.stdout and "metric distance: FAIL" in done.stdout
        done = oodida("deploy", "onboard", str(_module(tmp_path, "mean_too.py", MEAN_TOO)), *canary)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "PROMOTED" in done.stdout and "deployment (promotion)" in done.stdout
        with Oodida(system.url, user="cli", token=env["OODIDA_TOKEN"]) as o:
            versions = o.code_versions([1, 2, 3])["onboard"]
        assert base.version not in versions.values() and len(set(versions.values())) == 1

        module = str(tmp_path / "mean.py")
        bad = oodida("deploy", "onboard", module, "--canary", "a tenth", "--guard", str(guard_file))
        assert bad.returncode == 1 and "--canary: a fraction such as 0.1" in bad.stderr
        bad = oodida("deploy", "onboard", module, "--canary", "0.5", "--guard", str(tmp_path / "none.json"))
        assert bad.returncode == 1 and "cannot read it" in bad.stderr
        bad = oodida("deploy", "onboard", module, "--canary", "0.5")
        assert bad.returncode == 1 and "needs both --canary and --guard" in bad.stderr
        guard_file.write_text(json.dumps({"spec": GUARD_SPEC, "max_failure_rate": 2}))
        bad = oodida("deploy", "onboard", module, "--canary", "0.5", "--guard", str(guard_file))
        assert bad.returncode == 2 and "guard.max_failure_rate" in bad.stderr
        guard_file.write_text(json.dumps({"spec": GUARD_SPEC}))
        bad = oodida("deploy", "onboard", module, "--canary", "3", "--guard", str(guard_file))
        assert bad.returncode == 2 and "a count must be from 1 to 2" in bad.stderr


def test_canary_among_vehicles_chosen_by_tags_never_touches_the_others(tmp_path: Path) -> None:
    with (
        LocalSystem(4, data_dir=tmp_path / "sys", tags=["1-3:powertrain=ev", "4:powertrain=ice"]) as system,
        Oodida(system.url, user="tags", token=system.token("tags")) as o,
    ):
        wait_live(o, [1, 2, 3, 4])
        guard = _guard(fallback="average", metric="battery_voltage", tolerance=TOLERANCE)
        evs = {"tags": {"powertrain": "ev"}}
        report = o.deploy_onboard(
            _module(tmp_path, "mean.py", MEAN), clients=evs, canary=1, guard=guard, seed=1
        )
        print(report)
        assert report.outcome == "promoted", str(report)
        assert sorted((*report.canary, *report.control)) == [1, 2, 3]
        assert o.code_versions([1, 2, 3, 4])["onboard"] == {
            **dict.fromkeys([1, 2, 3], report.version),
            4: None,
        }
