"""A forged ``oodida.cloud.finish_iteration`` (analysts may push onto ``cloud``) does not end
another user's iteration early: the cloud ends an iteration as ``complete`` only when every
selected client has answered, at its ``deadline`` only once that deadline passed, and as
``cancel`` only when the assignment was cancelled. Real Redis (6.2, ACLs on), real workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.keys import CLOUD_QUEUE, Keys
from oodida_core.protocol.wire import TASK_FINISH_ITERATION
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

KEYS = Keys()
SPEC = {
    "name": "slow readings",
    "mode": "measurement",
    "clients": [1, 2],
    "signals": "speed",
    "onboard": "max",
    "frequency": 1,
    "samples": 8,  # read in real time: about 8 s per iteration
    "iterations": 1,
    "timeout": 120,
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    data: Path = tmp_path_factory.mktemp("forged-finish")
    with LocalSystem(0, data_dir=data, acl=True, realtime=True) as system:
        system.start_edge("vehicle-1", "1")
        system.start_edge("vehicle-2", "2")
        system.wait_ready(clients=2)
        yield system


def _sent(admin: redis.Redis, aid: str, timeout: float = 30.0) -> None:
    """Wait until the cloud published iteration 0 of ``aid`` to its clients."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if admin.hget(KEYS.assignment(aid), "sent") == b"0":
            return
        time.sleep(0.1)
    pytest.fail(f"iteration 0 of {aid} was not sent within {timeout}s")


def test_a_forged_finish_iteration_does_not_end_another_users_iteration_early(system: LocalSystem) -> None:
    admin = redis.Redis.from_url(system.url)
    analyst = system.settings.model_copy(update={"redis_url": system.role_urls["analyst"]})
    forger = make_celery_app(analyst, "forger")  # user B: only the analyst role's credentials
    try:
        with Oodida(settings=system.client_settings("alice")) as o:
            assignment = o.submit(SPEC)
            aid = assignment.id
            _sent(admin, aid)
            for reason in ("complete", "deadline", "cancel"):
                forger.send_task(
                    TASK_FINISH_ITERATION,
                    args=(None,),
                    kwargs={"assignment_id": aid, "iteration": 0, "reason": reason},
                    queue=CLOUD_QUEUE,
                    ignore_result=True,
                )
            time.sleep(3)  # the cloud took them long before the clients answer
            assert admin.hlen(KEYS.iterations(aid)) == 0, "a forged message ended the iteration"
            assert admin.hget(KEYS.assignment(aid), "status") == b"running"
            result = assignment.wait(timeout=90, progress=False)
        assert result.status == "done"
        (only,) = result.iterations
        assert only.ended_by == "complete"
        assert only.missing == ()
        assert sorted(only.onboard) == [1, 2]
        log = (system.log_dir / "cloud-1.log").read_text()
        ignored = [line for line in log.splitlines() if f"assignment {aid} iteration 0: a " in line]
        assert len(ignored) == 3 and all("ending ignored" in line for line in ignored), ignored
    finally:
        forger.close()
        admin.close()
