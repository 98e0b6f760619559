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
