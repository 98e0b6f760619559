"""Celery's own command line, pointed at a running system (``oodida up``) through the
module-level app ``oodida_core.app``: the workers answer ``inspect`` and ``status`` (the
inspection they answer: oodida_core/messaging/remote_control.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_core.messaging.routing import CLIENT_TASKS, CLOUD_TASKS

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
WORKERS = (f"cloud-1@{HOST}", f"clients-1-2@{HOST}")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``oodida up --clients 2``; the environment Celery's command needs to reach it."""
    oodida = Path(sys.executable).with_name("oodida")
    data = tmp_path_factory.mktemp("celery-cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OODIDA_", "CELERY_"))}
    up = subprocess.Popen(
        [str(oodida), "up", "--clients", "2", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # where it says that the system runs
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert up.stdout is not None
        first = up.stdout.readline().strip()
        name, _, url = first.partition("=")
        assert name == "OODIDA_REDIS_URL", first
        for line in up.stdout:  # ready when it says what runs
            if line.startswith("#") and "running" in line:
                break
        yield {**env, "OODIDA_REDIS_URL": url}
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


def celery(env: dict[str, str], *args: str) -> str:
    """What ``celery -A oodida_core.app ARGS`` prints, once every worker answered it."""
    command = [sys.executable, "-m", "celery", "-A", "oodida_core.app", *args, "--timeout", "3"]
    out = ""
    for _ in range(10):  # a worker just started may miss the first broadcast
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        out = done.stdout
        if done.returncode == 0 and all(f"->  {w}: OK" in out for w in WORKERS):
            return out
        time.sleep(1)
    pytest.fail(f"celery {' '.join(args)}: not every worker answered:\n{out}")


def answers(out: str) -> dict[str, list[str]]:
    """Each worker's items in ``celery inspect`` output (``->  name: OK``, then ``* item`` lines)."""
    found: dict[str, list[str]] = {}
    worker = ""
    for line in out.splitlines():
        if line.startswith("->  "):
            worker = line[4:].partition(":")[0]
            found[worker] = []
        elif worker and line.strip().startswith("* "):
            found[worker].append(line.strip())
    return found


def test_inspect_registered_lists_the_tasks_of_the_cloud_and_of_the_clients(running: dict[str, str]) -> None:
    registered = answers(celery(running, "inspect", "registered"))
    assert sorted(registered[WORKERS[0]]) == sorted(f"* {task}" for task in CLOUD_TASKS)
    assert sorted(registered[WORKERS[1]]) == sorted(f"* {task}" for task in CLIENT_TASKS)


def test_status_lists_every_worker(running: dict[str, str]) -> None:
    out = celery(running, "status")
    assert f"{len(WORKERS)} nodes online." in out


def test_inspect_active_and_stats_answer_from_every_worker(running: dict[str, str]) -> None:
    assert "- empty -" in celery(running, "inspect", "active")  # no assignment runs
    assert '"pool"' in celery(running, "inspect", "stats")
