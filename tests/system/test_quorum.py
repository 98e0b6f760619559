"""An iteration with a quorum (``min_clients``) closes as soon as that many clients answered,
on a live fleet: real Redis with ACLs on (vehicles hold only their own credentials), a cloud
worker, and edge processes of fast and slow clients (``OODIDA_EDGE_DELAY``: every task of a
slow client waits that long). The slow clients are reported ``late``, their answers never
reach the aggregate, not even the one that arrives while a later iteration runs; a forged
``quorum`` ending before the quorum is refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
from fault_kit import wait_for

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.keys import CLOUD_QUEUE, Keys, header_task_id
from oodida_core.protocol.wire import TASK_FINISH_ITERATION, OnboardResult, decode
from oodida_ops.local import LocalSystem
from oodida_user import Oodida, SpecError

pytestmark = pytest.mark.slow

KEYS = Keys()
MEDIUM, SLOW = 1.5, 4.0  # seconds each task of client 4, and of clients 5 and 6, waits
SPEC = {
    "name": "quorum",
    "mode": "measurement",
    "clients": [1, 2, 3, 4, 5, 6],
    "signals": "speed",
    "onboard": "average",
    "offboard": "collect",
    "frequency": 1,
    "samples": 5,
    "timeout": 60,
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(0, data_dir=tmp_path_factory.mktemp("quorum"), acl=True) as system:
        system.start_edge("fast", "1-3")
        system.start_edge("medium", "4", delay=MEDIUM)
        system.start_edge("slow", "5-6", delay=SLOW)
        system.wait_ready(clients=6)
        yield system


def _answer(admin: redis.Redis, aid: str, index: int, client: int) -> OnboardResult | None:
    raw = admin.get(f"celery-task-meta-{header_task_id(aid, index, client)}")
    return None if raw is None else decode(OnboardResult, json.loads(raw)["result"])


def test_a_quorum_closes_each_iteration_without_the_slow_clients_and_keeps_their_late_answers_out(
    system: LocalSystem,
) -> None:
    """min_clients 4 of 6: each iteration closes when client 4 (1.5 s) answered, long before
    clients 5 and 6 (4 s); they are late in every iteration. Client 5's answer to iteration 0
    arrives while iteration 2 runs: it is stored under its own key, and counts for nothing."""
    admin = redis.Redis.from_url(system.url)
    try:
        with Oodida(settings=system.client_settings("alice")) as o:
            a = o.submit({**SPEC, "iterations": 4, "min_clients": 4})
            result = a.wait(timeout=90, progress=False)
            assert result.status == "done"
            assert [it.index for it in result.iterations] == [0, 1, 2, 3]
            for it in result.iterations:
                assert it.ended_by == "quorum", it
                assert sorted(it.onboard) == [1, 2, 3, 4]
                assert it.late == (5, 6) and it.missing == ()
                assert MEDIUM - 0.2 < it.finished_at - it.started_at < SLOW - 1.0
            # client 5's answer to iteration 0 comes ~4 s after it started, while a later
            # iteration runs: it is an answer, and it is in no aggregate
            late = wait_for(lambda: _answer(admin, a.id, 0, 5), 30, "client 5's late answer")
            assert late.status == "ok"
            first = result.iterations[0]
            assert late.finished_at > first.finished_at + 1.0
            later = [
                it.index for it in result.iterations if it.started_at < late.finished_at < it.finished_at
            ]
            assert later and later[0] > 0, "the late answer did not arrive while a later iteration ran"
            time.sleep(SLOW + 1)  # every late answer has arrived by now
            again = a.result()
            assert again.iterations == result.iterations
            events = o.store.read_events(a.id)
            assert [e["index"] for _, e in events if e["type"] == "iteration"] == ["0", "1", "2", "3"]
            assert [e["status"] for _, e in events if e["type"] == "end"] == ["done"]
            assert "late: [5, 6]" in str(again)
    finally:
        admin.close()


def test_a_forged_quorum_ending_before_the_quorum_is_refused(system: LocalSystem) -> None:
    """min_clients 6: the quorum is every client, reached only when the slow ones answered
    (4 s). A ``quorum`` ending pushed onto ``cloud`` by another analyst at once is refused and
    logged; the iteration then closes with every client's answer."""
    admin = redis.Redis.from_url(system.url)
    analyst = system.settings.model_copy(update={"redis_url": system.role_urls["analyst"]})
    forger = make_celery_app(analyst, "forger")
    try:
        with Oodida(settings=system.client_settings("alice")) as o:
            a = o.submit({**SPEC, "iterations": 1, "min_clients": 6})
            wait_for(lambda: admin.hget(KEYS.assignment(a.id), "sent") == b"0", 30, "iteration 0 sent")
            forger.send_task(
                TASK_FINISH_ITERATION,
                args=(None,),
                kwargs={"assignment_id": a.id, "iteration": 0, "reason": "quorum"},
                queue=CLOUD_QUEUE,
                ignore_result=True,
            )
            time.sleep(2)  # the cloud took it long before the slow clients answer
            assert admin.hlen(KEYS.iterations(a.id)) == 0, "a forged quorum ended the iteration"
            result = a.wait(timeout=60, progress=False)
        (only,) = result.iterations
        assert only.ended_by == "complete" and only.late == () and sorted(only.onboard) == [1, 2, 3, 4, 5, 6]
        assert only.finished_at - only.started_at > SLOW - 0.5
        log = (system.log_dir / "cloud-1.log").read_text()
        refused = [line for line in log.splitlines() if f"assignment {a.id} iteration 0: a 'quorum'" in line]
        assert refused and "ending ignored: only" in refused[0] and "of its min_clients 6" in refused[0]
    finally:
        forger.close()
        admin.close()


def test_a_min_clients_above_the_selected_clients_is_refused_with_a_spec_error(system: LocalSystem) -> None:
    with Oodida(settings=system.client_settings("alice")) as o:
        rule = r"min_clients: must be at most the number of selected clients \(2: "
        with pytest.raises(SpecError, match=rule):
            o.submit({**SPEC, "clients": 2, "iterations": 1, "min_clients": 3}).wait(
                timeout=30, progress=False
            )
