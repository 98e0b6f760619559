"""Active-code replacement against real processes: deploy, swap mid-assignment, vote, roll
back, keep users apart, stop hostile code, and keep serving."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from oodida_edge.sources.simulated import SimulatedSensors
from oodida_ops.local import LocalSystem
from oodida_user import CustomCodeError, Oodida, SpecError

MEAN = """
def custom_code(x):
    values = x if isinstance(x, list) else [v for vs in x.values() for v in vs]
    return sum(values) / len(values)
"""
MAX = """
def custom_code(x):
    values = x if isinstance(x, list) else [v for vs in x.values() for v in vs]
    return max(values)
"""
SPEC = {
    "name": "custom",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 1,
    "samples": 200,
    "iterations": 1,
}


@pytest.fixture(scope="module")
def code_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    old = os.environ.get("OODIDA_CODE_TIME_LIMIT")
    os.environ["OODIDA_CODE_TIME_LIMIT"] = "3"
    try:
        with LocalSystem(5, data_dir=tmp_path_factory.mktemp("code"), processes=2) as s:
            yield s
    finally:
        if old is None:
            os.environ.pop("OODIDA_CODE_TIME_LIMIT", None)
        else:
            os.environ["OODIDA_CODE_TIME_LIMIT"] = old


def module(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture()
def alice(code_system: LocalSystem) -> Iterator[Oodida]:
    name = f"alice{time.monotonic_ns()}"
    with Oodida(code_system.url, user=name, token=code_system.token(name)) as o:
        yield o


def speeds(client: int, aid: str, iteration: int, samples: int = 200) -> np.ndarray:
    return SimulatedSensors().read(client, aid, iteration, ["speed"], samples, 1)["speed"]


def test_deploying_to_two_of_five_clients_is_accepted_by_exactly_those(alice: Oodida, tmp_path: Path) -> None:
    report = alice.deploy_onboard(module(tmp_path, "m.py", MEAN), clients=[2, 4]).wait(timeout=30)
    assert report.accepted == (2, 4) and report.rejected == {} and report.pending == ()
    assert report.version.startswith("sha256:")
    versions = alice.code_versions([1, 2, 3, 4, 5])["onboard"]
    assert versions == {1: None, 2: report.version, 3: None, 4: report.version, 5: None}


def test_custom_assignment_runs_the_users_module_and_reports_its_version(
    alice: Oodida, tmp_path: Path
) -> None:
    report = alice.deploy_onboard(module(tmp_path, "m.py", MEAN), clients="all").wait(timeout=30)
    a = alice.submit(SPEC)
    result = a.wait(timeout=60)
    it = result.iterations[0]
    assert sorted(it.onboard) == [1, 2, 3, 4, 5]
    for cid in range(1, 6):
        assert it.onboard[cid] == pytest.approx(float(np.mean(speeds(cid, a.id, 0))))
        assert it.versions[cid] == report.version


def test_an_assignment_needing_code_a_client_lacks_fails_before_dispatch_naming_it(
    alice: Oodida, tmp_path: Path
) -> None:
    alice.deploy_onboard(module(tmp_path, "m.py", MEAN), clients=[1, 2]).wait(timeout=30)
    with pytest.raises(SpecError, match=r"no on-board code on clients 3-5"):
        alice.submit(SPEC)
    with pytest.raises(SpecError, match="no off-board code"):
        alice.submit({**SPEC, "clients": [1, 2], "offboard": "custom"})


def test_a_running_assignment_swaps_to_a_new_version_without_lost_iterations_or_restarts(
    alice: Oodida, code_system: LocalSystem, tmp_path: Path
) -> None:
    pids_before = {c.client_id: c.pid for c in alice.clients()}
    cloud_pid = code_system.procs["cloud-1"].pid
    v1 = alice.deploy_onboard(module(tmp_path, "m.py", MEAN)).wait(timeout=30).version
    a = alice.submit({**SPEC, "iterations": 30, "samples": 50})
    v2 = None
    for seen, _it in enumerate(a.iterations(timeout=120), start=1):
        if seen == 5:
            v2 = alice.deploy_onboard(module(tmp_path, "m.py", MAX)).wait(timeout=30).version
    result = a.result()
    assert result.status == "done" and v2 is not None and v1 != v2
    assert [it.index for it in result.iterations] == list(range(30))
    versions = [set(it.versions.values()) for it in result.iterations]
    assert all(len(v) == 1 for v in versions)  # each iteration ran on one version
    flat = [v.pop() for v in versions]
    switch = flat.index(v2)
    assert 5 <= switch < 30 and set(flat[:switch]) == {v1} and set(flat[switch:]) == {v2}
    for it in result.iterations[switch:]:
        for cid, value in it.onboard.items():
            assert value == pytest.approx(float(np.max(speeds(cid, a.id, it.index, 50))))
    assert {c.client_id: c.pid for c in alice.clients()} == pids_before
    assert code_system.procs["cloud-1"].poll() is None and code_system.procs["cloud-1"].pid == cloud_pid


def test_majority_vote_keeps_the_larger_group_and_reports_the_minority(alice: Oodida, tmp_path: Path) -> None:
    va = alice.deploy_onboard(module(tmp_path, "a.py", MEAN), clients=[1, 2, 3]).wait(timeout=30).version
    vb = alice.deploy_onboard(module(tmp_path, "b.py", MAX), clients=[4, 5]).wait(timeout=30).version
    result = alice.submit({**SPEC, "offboard": "average"}).wait(timeout=60)
    it = result.iterations[0]
    assert sorted(it.onboard) == [1, 2, 3]
    assert sorted(it.discarded) == [4, 5] and vb[:19] in it.discarded[4]
    assert it.versions == {1: va, 2: va, 3: va, 4: vb, 5: vb}
    assert it.value == pytest.approx(np.mean([it.onboard[c] for c in (1, 2, 3)]))


def test_rollback_restores_the_previous_version(alice: Oodida, tmp_path: Path) -> None:
    v1 = alice.deploy_onboard(module(tmp_path, "m.py", MEAN), clients=[1]).wait(timeout=30).version
    v2 = alice.deploy_onboard(module(tmp_path, "m.py", MAX), clients=[1]).wait(timeout=30).version
    assert alice.code_versions([1])["onboard"] == {1: v2}
    assert alice.rollback_onboard([1]) == {1: v1}
    result = alice.submit({**SPEC, "clients": [1]}).wait(timeout=60)
    assert result.iterations[0].versions == {1: v1}
    o1 = alice.deploy_offboard(module(tmp_path, "off.py", "def custom_code(x):\n    return len(x)\n")).wait()
    o2 = alice.deploy_offboard(module(tmp_path, "off.py", "def custom_code(x):\n    return -len(x)\n")).wait()
    assert o1.accepted == ("cloud",) and alice.code_versions([])["offboard"] == o2.version
    assert alice.rollback_offboard() == o1.version


def test_offboard_custom_code_gets_kept_values_in_client_order(alice: Oodida, tmp_path: Path) -> None:
    alice.deploy_onboard(module(tmp_path, "m.py", MEAN)).wait(timeout=30)
    off = alice.deploy_offboard(
        module(
            tmp_path,
            "spread.py",
            """
        import statistics
        def custom_code(x):
            return {"n": len(x), "spread": max(x) - min(x), "median": statistics.median(x)}
    """,
        )
    ).wait(timeout=30)
    result = alice.submit({**SPEC, "offboard": "custom"}).wait(timeout=60)
    it = result.iterations[0]
    values = [it.onboard[c] for c in sorted(it.onboard)]
    assert it.value == pytest.approx(
        {"n": 5, "spread": max(values) - min(values), "median": float(np.median(values))}
    )
    assert it.offboard_version == off.version


def test_two_users_with_modules_of_the_same_name_never_see_each_others_code(
    code_system: LocalSystem, tmp_path: Path
) -> None:
    with (
        Oodida(code_system.url, user="ann", token=code_system.token("ann")) as ann,
        Oodida(code_system.url, user="ben", token=code_system.token("ben")) as ben,
    ):
        (tmp_path / "ann").mkdir()
        (tmp_path / "ben").mkdir()
        va = ann.deploy_onboard(module(tmp_path / "ann", "mod.py", MEAN), clients=[1, 2]).wait().version
        vb = ben.deploy_onboard(module(tmp_path / "ben", "mod.py", MAX), clients=[1, 2]).wait().version
        ra = ann.submit({**SPEC, "clients": [1, 2]})
        rb = ben.submit({**SPEC, "clients": [1, 2]})
        res_a, res_b = ra.wait(timeout=60), rb.wait(timeout=60)
        assert set(res_a.iterations[0].versions.values()) == {va}
        assert set(res_b.iterations[0].versions.values()) == {vb}
        for cid in (1, 2):
            assert res_a.iterations[0].onboard[cid] == pytest.approx(float(np.mean(speeds(cid, ra.id, 0))))
            assert res_b.iterations[0].onboard[cid] == pytest.approx(float(np.max(speeds(cid, rb.id, 0))))
        assert ann.code_versions([1, 2])["onboard"] == {1: va, 2: va}
        with pytest.raises(Exception, match="no assignment"):
            ben.assignment(ra.id)


def test_an_error_in_custom_code_names_the_line_and_the_others_still_count(
    alice: Oodida, tmp_path: Path
) -> None:
    alice.deploy_onboard(module(tmp_path, "m.py", MEAN), clients=[1, 2]).wait(timeout=30)
    alice.deploy_onboard(
        module(
            tmp_path,
            "bad.py",
            """
        def custom_code(x):
            if len(x) == 123:
                return 1 / 0
            return 0.0
    """,
        ),
        clients=[3],
    ).wait(timeout=30)
    result = alice.submit({**SPEC, "clients": [1, 2, 3], "samples": 123, "offboard": "average"}).wait(
        timeout=60
    )
    it = result.iterations[0]
    assert sorted(it.onboard) == [1, 2] and list(it.failed) == [3]
    assert "ZeroDivisionError" in it.failed[3] and "line 4" in it.failed[3]
    assert it.value == pytest.approx((it.onboard[1] + it.onboard[2]) / 2)
    again = alice.submit({**SPEC, "clients": [1, 2, 3]}).wait(timeout=60).iterations[0]
    assert again.failed == {}  # the same worker serves client 3 again; its minority version is outvoted
    assert sorted(again.onboard) == [1, 2] and list(again.discarded) == [3]


def test_a_runaway_call_is_stopped_by_the_time_limit_and_the_worker_goes_on(
    alice: Oodida, tmp_path: Path
) -> None:
    alice.deploy_onboard(
        module(
            tmp_path,
            "loop.py",
            """
        def custom_code(x):
            while len(x) == 77:
                pass
            return len(x)
    """,
        ),
        clients=[5],
    ).wait(timeout=30)
    result = alice.submit({**SPEC, "clients": [5], "samples": 77, "timeout": 30}).wait(timeout=60)
    assert "longer than 3" in result.iterations[0].failed[5]
    assert alice.submit({**SPEC, "clients": [5], "samples": 78}).wait(timeout=60).iterations[0].onboard == {
        5: 78
    }


def test_a_memory_bomb_is_stopped_by_the_memory_limit_and_the_worker_goes_on(
    alice: Oodida, tmp_path: Path
) -> None:
    alice.deploy_onboard(
        module(
            tmp_path,
            "bomb.py",
            """
        def custom_code(x):
            if len(x) == 99:
                hog = [0.5] * (10 ** 9)
                return len(hog)
            return len(x)
    """,
        ),
        clients=[4],
    ).wait(timeout=30)
    result = alice.submit({**SPEC, "clients": [4], "samples": 99}).wait(timeout=60)
    assert "MiB" in result.iterations[0].failed[4]
    assert alice.submit({**SPEC, "clients": [4], "samples": 98}).wait(timeout=60).iterations[0].onboard == {
        4: 98
    }


@pytest.mark.parametrize(
    ("name", "source", "fragment"),
    [
        ("imports_os.py", "import os\ndef custom_code(x):\n    return 1\n", "os"),
        ("no_function.py", "def compute(x):\n    return 1\n", "custom_code"),
        ("two_args.py", "def custom_code(x, y):\n    return 1\n", "one"),
        ("syntax.py", "def custom_code(x):\n    return (\n", "line"),
        ("opens.py", "def custom_code(x):\n    return open('/etc/passwd').read()\n", "open"),
        ("dunder.py", "def custom_code(x):\n    return x.__class__.__name__\n", "_"),
        ("returns_set.py", "def custom_code(x):\n    return {1, 2}\n", "set"),
    ],
)
def test_a_module_breaking_a_rule_is_refused_on_the_analysts_machine(
    alice: Oodida, tmp_path: Path, name: str, source: str, fragment: str
) -> None:
    with pytest.raises(CustomCodeError, match=fragment):
        alice.deploy_onboard(module(tmp_path, name, source))


def test_the_cloud_checks_a_module_again_even_if_the_library_was_bypassed(alice: Oodida) -> None:
    from oodida_core.protocol.wire import TASK_DEPLOY, DeployRequest
    from oodida_user.deploy import Deployment

    request = DeployRequest(
        deploy_id="bypass-dep",
        user=alice.user,
        token=alice.settings.token,
        request_id="bypass-dep-request",
        role="onboard",
        filename="evil.py",
        source="import subprocess\ndef custom_code(x):\n    return 1\n",
    )
    alice._send(TASK_DEPLOY, request, "bypass-dep-deploy")
    with pytest.raises(CustomCodeError, match="subprocess"):
        Deployment(alice, "bypass-dep", "", "onboard", "evil.py", request.request_id).wait(timeout=30)


def test_the_paper_deploy_form_works_through_submit(alice: Oodida, tmp_path: Path) -> None:
    path = module(tmp_path, "m.py", MEAN)
    report = alice.submit({"mode": "deploy_onboard", "filename": str(path), "clients": [1, 2]}).wait()
    assert report.accepted == (1, 2)


def test_deploy_and_rollback_from_the_command_line(code_system: LocalSystem, tmp_path: Path) -> None:
    path = module(tmp_path, "m.py", MEAN)
    env = {
        **os.environ,
        "OODIDA_REDIS_URL": code_system.url,
        "OODIDA_USER": "cli-coder",
        "OODIDA_TOKEN": code_system.token("cli-coder"),
    }
    cli = [os.path.join(os.path.dirname(os.sys.executable), "oodida")]  # type: ignore[attr-defined]
    out = subprocess.run(
        [*cli, "deploy", "onboard", str(path), "--clients", "1-2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "accepted: [1, 2]" in out.stdout
    out = subprocess.run(
        [*cli, "rollback", "onboard", "--clients", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "client 1: on-board code now none" in out.stdout
