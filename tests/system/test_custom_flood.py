"""One user's flood of CPU-heavy custom tasks does not starve another user's built-in tasks on
the same vehicles, during the flood or after it is cancelled. User A runs 10 assignments (the
default quota) of a module that spins until the time limit on clients 1-3, without end; user
B's built-in assignment on the same clients still gets every client. Once A cancels all 10,
A's waiting tasks are skipped when their turn comes (the end marker is read in the lane), and
B's next built-in assignment completes on every client within seconds. Real Redis (6.2, ACLs
on), real workers, one edge process for the three clients."""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_ops.local import LocalSystem
from oodida_user import Oodida

CLIENTS = [1, 2, 3]
TIME_LIMIT = 3
HEAVY = """
def custom_code(x):
    while len(x) == 5:
        pass
    return len(x)
"""


def spec(onboard: str, samples: int, iterations: int, timeout: int) -> dict[str, object]:
    return {
        "name": onboard,
        "mode": "measurement",
        "clients": CLIENTS,
        "signals": "speed",
        "onboard": onboard,
        "offboard": "collect",
        "frequency": 1,
        "samples": samples,
        "iterations": iterations,
        "timeout": timeout,
    }


@pytest.fixture()
def system(tmp_path: Path) -> Iterator[LocalSystem]:
    old = os.environ.get("OODIDA_CODE_TIME_LIMIT")
    os.environ["OODIDA_CODE_TIME_LIMIT"] = str(TIME_LIMIT)
    try:
        with LocalSystem(len(CLIENTS), data_dir=tmp_path / "oodida", processes=1, acl=True) as s:
            yield s
    finally:
        if old is None:
            os.environ.pop("OODIDA_CODE_TIME_LIMIT", None)
        else:
            os.environ["OODIDA_CODE_TIME_LIMIT"] = old


def test_a_flood_of_heavy_custom_assignments_starves_no_other_users_builtin_one_nor_outlives_cancel(
    system: LocalSystem, tmp_path: Path
) -> None:
    module = tmp_path / "heavy.py"
    module.write_text(textwrap.dedent(HEAVY))
    with (
        Oodida(settings=system.client_settings("flooder")) as a,
        Oodida(settings=system.client_settings("bob")) as b,
    ):
        assert a.deploy_onboard(module, clients=CLIENTS).wait(timeout=60).accepted == tuple(CLIENTS)
        flood = [a.submit(spec("custom", 5, 0, 3600)) for _ in range(10)]
        time.sleep(2)  # A's tasks fill the clients' queues and lanes
        during = b.submit(spec("average", 10, 1, 10)).wait(timeout=60, progress=False).iterations[0]
        assert during.missing == () and sorted(during.onboard) == CLIENTS, during
        for assignment in flood:
            assignment.cancel()
        time.sleep(1)
        begun = time.monotonic()
        after = b.submit(spec("average", 10, 1, 10)).wait(timeout=60, progress=False).iterations[0]
        took = time.monotonic() - begun
        assert after.missing == () and sorted(after.onboard) == CLIENTS, after
        assert took < 6, f"the built-in assignment after the cancel took {took:.1f}s"
