"""``oodida health`` against a live system: what container health checks run."""

from __future__ import annotations

import os
import subprocess
import sys

from flower_kit import FlowerSystem


def _health(fs: FlowerSystem, *args: str) -> subprocess.CompletedProcess[str]:
    assert fs.system is not None
    env = {**os.environ, "OODIDA_REDIS_URL": fs.system.url}
    return subprocess.run(
        [sys.executable, "-m", "oodida_user._cli", "health", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health_is_ok_for_live_clients_the_local_cloud_worker_and_flower(flower_system: FlowerSystem) -> None:
    out = _health(flower_system, "--clients", "1-3,7", "--cloud", "--flower", flower_system.url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: clients 1-3,7 are live" in out.stdout
    assert "ok: cloud worker cloud-1@" in out.stdout
    assert "ok: Flower answers" in out.stdout
    default = _health(flower_system)
    assert default.returncode == 0 and "ok: 1 cloud worker(s) live" in default.stdout


def test_health_fails_naming_a_client_that_is_not_live(flower_system: FlowerSystem) -> None:
    out = _health(flower_system, "--clients", "1-3,9")
    assert out.returncode == 1
    assert "unhealthy: clients 9 are not live" in out.stdout


def _jail_health(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oodida_user._cli", "health", "--jail"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health_reports_the_jail_level_and_is_unhealthy_below_the_operators_minimum() -> None:
    fine = _jail_health(OODIDA_JAIL="process")
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "ok: custom code: jail level " in fine.stdout and "(OODIDA_JAIL=process)" in fine.stdout
    # without bubblewrap the namespaces layer is missing: level kernel at best, below "full"
    weak = _jail_health(OODIDA_JAIL="full", OODIDA_JAIL_BWRAP="/nonexistent/bwrap")
    assert weak.returncode == 1
    assert "unhealthy: custom code: jail level " in weak.stdout
    assert "missing: namespaces: bubblewrap cannot run" in weak.stdout
