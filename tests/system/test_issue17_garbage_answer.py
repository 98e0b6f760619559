"""Red team of issue 17: a hostile vehicle writes garbage into its own result key (its ACL user
may) of another user's assignment; the cloud drops it and the assignment goes on."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import redis

from oodida_core.protocol.keys import header_task_id
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

EVIL = 4


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(0, data_dir=tmp_path_factory.mktemp("issue17-garbage"), acl=True) as s:
        s.start_edge("honest", "1-3")
        s.start_edge("evil", str(EVIL))
        s.wait_ready(clients=EVIL)
        yield s


@pytest.mark.parametrize("buffer", [None, 2], ids=["chord", "buffered"])
@pytest.mark.parametrize("garbage", [b"garbage", b"[1, 2]", b'{"result": 1}', b"null"])
def test_garbage_in_a_vehicles_own_result_key_is_dropped_and_the_assignment_ends(
    system: LocalSystem, buffer: int | None, garbage: bytes
) -> None:
    """It raised out of finish_iteration at every deadline: the assignment never ended."""
    system.wait_ready(clients=EVIL)  # the hostile vehicle's edge was stopped a while before
    evil_edge = system.procs["evil"].pid
    os.killpg(evil_edge, signal.SIGSTOP)  # only the garbage speaks for the hostile vehicle
    evil = redis.Redis.from_url(system.vehicle_urls["evil"].url)
    o = Oodida(settings=system.client_settings("alice"))
    spec: dict[str, object] = {
        "name": "garbage answers",
        "mode": "federated",
        "clients": [1, 2, 3, EVIL],
        "signals": ["speed", "rpm"],
        "onboard": "train",
        "offboard": "fedavg",
        "frequency": 10,
        "samples": 50,
        "iterations": 2,
        "timeout": 3,
    }
    if buffer is not None:
        spec["buffer"] = buffer
    try:
        a = o.submit(spec)
        for version in range(3):
            evil.set(f"celery-task-meta-{header_task_id(a.id, version, EVIL)}", garbage, ex=600)
        result = a.wait(timeout=45, progress=False)
    finally:
        os.killpg(evil_edge, signal.SIGCONT)
        evil.close()
        o.close()
    assert result.status == "done"
    assert all(EVIL not in it.onboard and it.value is not None for it in result.iterations)
