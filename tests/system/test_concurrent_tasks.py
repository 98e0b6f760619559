"""Tasks of one vehicle run concurrently (issue 12 item 4), against real processes.

One edge process serves every client. User A's custom module spins on the CPU until the time
limit stops it, on every client; other users' assignments on the same clients, built-in or
custom, still get every client's answer, long before their deadline.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_ops.local import LocalSystem
from oodida_user import Oodida

CLIENTS = [1, 2, 3, 4, 5, 6]
TIME_LIMIT = 3  # seconds a call of A's runaway module takes; A's 6 tasks: 18 s one by one
DEADLINE = 8  # the other users' iteration timeout: well short of A's 18 s
BOUND = 3.0  # what the other users' iteration may take next to A's tasks

RUNAWAY = """
def custom_code(x):
    while len(x) == 150:
        pass
    return len(x)
"""
QUICK = """
def custom_code(x):
    return len(x)
"""


def spec(onboard: str, samples: int, timeout: int) -> dict[str, object]:
    return {
        "name": onboard,
        "mode": "measurement",
        "clients": CLIENTS,
        "signals": "speed",
        "onboard": onboard,
        "offboard": "collect",
        "frequency": 1,
        "samples": samples,
        "iterations": 1,
        "timeout": timeout,
    }


@pytest.fixture()
def one_process(tmp_path: Path) -> Iterator[LocalSystem]:
    old = os.environ.get("OODIDA_CODE_TIME_LIMIT")
    os.environ["OODIDA_CODE_TIME_LIMIT"] = str(TIME_LIMIT)
    try:
        with LocalSystem(len(CLIENTS), data_dir=tmp_path / "oodida", processes=1) as s:
            yield s
    finally:
        if old is None:
            os.environ.pop("OODIDA_CODE_TIME_LIMIT", None)
        else:
            os.environ["OODIDA_CODE_TIME_LIMIT"] = old


def user(system: LocalSystem, name: str) -> Oodida:
    return Oodida(system.url, user=name, token=system.token(name))


def deploy(o: Oodida, tmp_path: Path, name: str, source: str) -> None:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    report = o.deploy_onboard(path, clients=CLIENTS).wait(timeout=60)
    assert report.accepted == tuple(CLIENTS)


def start_runaway(system: LocalSystem, tmp_path: Path) -> Oodida:
    """User A's CPU-bound custom assignment, running on every client of the one process."""
    a = user(system, "runaway")
    deploy(a, tmp_path, "spin.py", RUNAWAY)
    a.submit(spec("custom", 150, 120))
    time.sleep(1.0)  # A's first tasks are running
    return a


def quick_custom_user(system: LocalSystem, tmp_path: Path) -> Oodida:
    """User C, whose module is deployed before A's tasks start."""
    c = user(system, "quick")
    deploy(c, tmp_path, "quick.py", QUICK)
    return c


def test_a_builtin_assignment_keeps_every_client_next_to_a_runaway_custom_one(
    one_process: LocalSystem, tmp_path: Path
) -> None:
    a = start_runaway(one_process, tmp_path)
    with a, user(one_process, "builtin") as b:
        begun = time.monotonic()
        it = b.submit(spec("average", 100, DEADLINE)).wait(timeout=60).iterations[0]
        took = time.monotonic() - begun
        assert it.missing == () and it.failed == {}
        assert sorted(it.onboard) == CLIENTS
        assert took < BOUND, f"B's iteration took {took:.1f} s next to A's runaway tasks"


def test_a_quick_custom_assignment_keeps_every_client_next_to_a_runaway_one(
    one_process: LocalSystem, tmp_path: Path
) -> None:
    c = quick_custom_user(one_process, tmp_path)
    a = start_runaway(one_process, tmp_path)
    with a, c:
        begun = time.monotonic()
        it = c.submit(spec("custom", 100, DEADLINE)).wait(timeout=60).iterations[0]
        took = time.monotonic() - begun
        assert it.missing == () and it.failed == {}
        assert it.onboard == dict.fromkeys(CLIENTS, 100)
        assert took < BOUND, f"C's iteration took {took:.1f} s next to A's runaway tasks"
