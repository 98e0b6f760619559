"""A client offline when a deployment is sent: the report says it is pending; when the
client comes back it installs the deployment before it runs any custom task, even a task that
waited in its queue ahead of the install message. Repeated, with a new version each time
and a random time offline.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from fault_kit import REPEATS, fault_rng, fault_settings, kill, wait_for, wait_live

from oodida_core.state.chords import answered
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

pytestmark = pytest.mark.slow
__all__ = ["fault_rng"]  # a fixture

SPEC = {
    "name": "custom on a client that was offline",
    "mode": "measurement",
    "clients": [1, 2, 3, 7],
    "signals": "speed",
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 1,
    "samples": 10,
    "iterations": 1,
    "timeout": 20,
}


def _module(path: Path, number: int) -> Path:
    path.write_text(f"def custom_code(x):\n    return {number}\n")
    return path


def test_offline_client_gets_the_deployment_before_any_custom_task(
    tmp_path: Path, fault_rng: random.Random
) -> None:
    with LocalSystem(3, data_dir=tmp_path / "deploy", settings=fault_settings()) as system:
        system.start_edge("client-7", "7")
        with Oodida(system.url, user="tester", token=system.token("tester")) as o:
            wait_live(o, [7])
            first = o.deploy_onboard(_module(tmp_path / "v0.py", 0), clients=[1, 2, 3, 7]).wait(timeout=60)
            assert sorted(first.accepted) == [1, 2, 3, 7]
            for rep in range(REPEATS):
                kill(system, "client-7")
                # Within the heartbeat window 7 still counts as live: the assignment is accepted
                # and its task for 7 waits in 7's queue, ahead of the deployment below.
                a = o.submit(SPEC)
                wait_for(lambda a=a: (answered(o.app, o.redis, a.id, 0) or 0) >= 3, 30, "clients 1-3")
                deployment = o.deploy_onboard(
                    _module(tmp_path / f"v{rep + 1}.py", rep + 1), clients=[1, 2, 3, 7]
                )
                report = deployment.wait(timeout=3)
                assert report.pending == (7,), report
                assert sorted(report.accepted) == [1, 2, 3]
                assert "pending" in str(report)
                offline = fault_rng.uniform(0.5, 3.0)
                time.sleep(offline)
                system.start_edge("client-7", "7")
                result = a.wait(timeout=60, progress=False)
                it = result.iterations[0]
                print(f"rep {rep}: offline {offline:.1f}s; 7 ran {it.versions.get(7)}")
                # 7's task was queued before the deployment; 7 ran it with the new version.
                assert it.versions[7] == deployment.version
                assert it.missing == () and it.failed == {}
                final = wait_for(lambda d=deployment: d.report().complete and d.report(), 30, "7's verdict")
                assert sorted(final.accepted) == [1, 2, 3, 7]
                assert o.code_versions([7])["onboard"] == {7: deployment.version}
            # The install messages that waited in 7's queue arrived after 7 had installed
            # from its pending list: they moved nothing back.
            time.sleep(1)
            assert o.code_versions([1, 2, 3, 7])["onboard"] == dict.fromkeys([1, 2, 3, 7], deployment.version)
            assert o.redis.exists(o.keys.pending_installs(7)) == 0
