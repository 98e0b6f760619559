"""Exit codes of ``oodida submit`` and ``oodida results`` against a real system: 4 for an
assignment that ended failed (every failure printed), 0 for one that was cancelled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

OODIDA = str(Path(sys.executable).with_name("oodida"))
# Passes the library's dry run (other lengths), raises on what the clients send (123 samples).
RAISES = "def custom_code(x):\n    if len(x) == 123:\n        raise ValueError('no good')\n    return 0.0\n"


def run(system: LocalSystem, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OODIDA_REDIS_URL": system.url,
        "OODIDA_USER": user,
        "OODIDA_TOKEN": system.token(user),
    }
    return subprocess.run([OODIDA, *args], env=env, capture_output=True, text=True, timeout=120)


def test_an_assignment_that_ended_failed_exits_4_from_submit_and_results_listing_its_failures(
    system: LocalSystem, tmp_path: Path
) -> None:
    user = f"failing{time.monotonic_ns()}"
    module = tmp_path / "bad.py"
    module.write_text(RAISES)
    with Oodida(system.url, user=user, token=system.token(user)) as o:
        assert not o.deploy_onboard(module, clients="all").wait(timeout=30).rejected
        spec = tmp_path / "failing.json"
        spec.write_text(
            json.dumps({**LISTING_1_1, "name": "fails", "onboard": "custom", "samples": 123, "iterations": 2})
        )
        out = run(system, user, "submit", str(spec))
        aid = out.stdout.splitlines()[0]
        assert o.assignment(aid).status() == "failed", out.stdout
    assert out.returncode == 4, out.stdout + out.stderr
    assert "failed" in out.stdout and "no good" in out.stdout
    again = run(system, user, "results", aid)
    assert again.returncode == 4 and again.stdout == out.stdout.split("\n", 1)[1]
    as_json = run(system, user, "results", aid, "--json")
    assert as_json.returncode == 4 and json.loads(as_json.stdout)["status"] == "failed"


def test_a_cancelled_assignment_exits_0_and_says_cancelled(system: LocalSystem, tmp_path: Path) -> None:
    user = f"canceller{time.monotonic_ns()}"
    with Oodida(system.url, user=user, token=system.token(user)) as o:
        a = o.submit({**LISTING_1_1, "name": "stopped", "iterations": 0, "keep": 5})
        a.cancel(timeout=30)
    out = run(system, user, "results", a.id)
    assert out.returncode == 0 and "cancelled" in out.stdout


def test_submitting_an_endless_stream_warns_in_one_line_with_the_command_that_stops_it(
    system: LocalSystem, tmp_path: Path
) -> None:
    user = f"streamer{time.monotonic_ns()}"
    spec = tmp_path / "stream.json"
    spec.write_text(json.dumps({**LISTING_1_1, "name": "forgotten", "iterations": 0}))
    out = run(system, user, "submit", "--no-wait", str(spec))
    aid = out.stdout.strip()
    try:
        assert out.returncode == 0, out.stderr
        warning = [line for line in out.stderr.splitlines() if line.startswith("oodida: warning: ")]
        assert len(warning) == 1 and f"oodida cancel {aid}" in warning[0], out.stderr
        assert "warnings.warn" not in out.stderr and ".py:" not in out.stderr
    finally:
        with Oodida(system.url, user=user, token=system.token(user)) as o:
            o.assignment(aid).cancel(timeout=30)
