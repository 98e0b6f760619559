"""Asynchronous federated aggregation (the spec's ``buffer``, FedBuff) on a live fleet: real
Redis with ACLs on, a cloud worker, three fast clients and a slow one (``OODIDA_EDGE_DELAY``).
Every aggregation takes ``buffer`` answers and sends the new model to those clients only; the
slow client's answers join later aggregations with their staleness recorded; a forged
``buffer`` ending before the buffer is full aggregates nothing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import redis
from fault_kit import wait_for

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.keys import CLOUD_QUEUE, Keys, header_task_id
from oodida_core.protocol.wire import TASK_FINISH_ITERATION
from oodida_ops.local import LocalSystem
from oodida_user import Oodida, SpecError

pytestmark = pytest.mark.slow

KEYS = Keys()
SLOW = 1.0  # seconds each task of client 4 waits
SPEC = {
    "name": "fedbuff",
    "mode": "federated",
    "clients": [1, 2, 3, 4],
    "signals": ["speed", "rpm", "fuel_rate"],
    "onboard": "train",
    "offboard": "fedavg",
    "frequency": 1,
    "samples": 50,
    "timeout": 60,
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(0, data_dir=tmp_path_factory.mktemp("buffered"), acl=True) as system:
        system.start_edge("fast", "1-3")
        system.start_edge("slow", "4", delay=SLOW)
        system.wait_ready(clients=4)
        yield system


def test_each_aggregation_takes_a_buffer_of_answers_and_only_those_clients_get_the_new_model(
    system: LocalSystem,
) -> None:
    admin = redis.Redis.from_url(system.url)
    try:
        with Oodida(settings=system.client_settings("alice")) as o:
            a = o.submit({**SPEC, "iterations": 0, "buffer": 2})  # a stream, cancelled below

            def slow_taken_twice() -> bool:
                its = a.result().iterations
                return sum(4 in it.staleness for it in its) >= 2

            wait_for(slow_taken_twice, 60, "client 4 aggregated twice")
            result = a.cancel()
        assert result.status == "cancelled"
        its = result.iterations
        assert [it.index for it in its] == list(range(len(its)))
        for it in its[:-1]:  # the last one closed at the cancel, with what was waiting
            assert it.ended_by == "buffer", it
            assert len(it.onboard) + len(it.failed) >= 2
            assert set(it.staleness) == set(it.onboard) | set(it.failed)
            assert it.value is not None and it.missing == ()
        slow = [it for it in its if 4 in it.staleness]
        assert all(it.staleness[4] >= 1 for it in slow), "the slow client's model was never behind"
        # client 4 was sent version 0, and a version v > 0 only right after aggregation v-1 took it
        taken = {it.index for it in its if 4 in it.staleness}
        sent = [
            v for v in range(len(its) + 1) if admin.exists(f"celery-task-meta-{header_task_id(a.id, v, 4)}")
        ]
        assert sent[0] == 0 and all(v - 1 in taken for v in sent[1:]), (sent, taken)
        fast = [
            v for v in range(len(its) + 1) if admin.exists(f"celery-task-meta-{header_task_id(a.id, v, 1)}")
        ]
        assert len(fast) > 2 * len(sent), "the fast client did not get the new models"
        assert re.search(r"staleness: (\d+: \d+, )*4: [1-9]", str(result)), "staleness not shown"
    finally:
        admin.close()


def test_a_forged_buffer_ending_before_the_buffer_is_full_aggregates_nothing(system: LocalSystem) -> None:
    """buffer 4: only when the slow client answered (1 s). A ``buffer`` ending pushed onto
    ``cloud`` by another analyst at once finds fewer answers and is ignored."""
    admin = redis.Redis.from_url(system.url)
    forger = make_celery_app(
        system.settings.model_copy(update={"redis_url": system.role_urls["analyst"]}), "f"
    )
    try:
        with Oodida(settings=system.client_settings("alice")) as o:
            a = o.submit({**SPEC, "iterations": 1, "buffer": 4})
            wait_for(lambda: admin.hget(KEYS.assignment(a.id), "sent") == b"0", 30, "version 0 sent")
            for reason in ("buffer", "deadline", "complete", "quorum"):
                forger.send_task(
                    TASK_FINISH_ITERATION,
                    args=(None,),
                    kwargs={"assignment_id": a.id, "iteration": 0, "reason": reason},
                    queue=CLOUD_QUEUE,
                    ignore_result=True,
                )
            time.sleep(SLOW / 2)
            assert admin.hlen(KEYS.iterations(a.id)) == 0, "a forged ending aggregated"
            result = a.wait(timeout=60, progress=False)
        (only,) = result.iterations
        assert only.ended_by == "buffer" and sorted(only.onboard) == [1, 2, 3, 4]
        assert only.staleness == {1: 0, 2: 0, 3: 0, 4: 0}
    finally:
        forger.close()
        admin.close()


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (
            {"mode": "measurement", "onboard": "average", "offboard": "collect", "buffer": 2},
            "only allowed in federated",
        ),
        ({"buffer": 5}, r"at most the number of selected clients \(4: "),
        ({"buffer": 2, "min_clients": 2}, "not with buffer"),
    ],
)
def test_a_buffer_that_cannot_run_is_refused_at_start(
    system: LocalSystem, change: dict[str, object], rule: str
) -> None:
    with Oodida(settings=system.client_settings("alice")) as o, pytest.raises(SpecError, match=rule):
        o.submit({**SPEC, "iterations": 1, **change}).wait(timeout=30, progress=False)


def test_an_aggregation_whose_buffer_does_not_fill_in_time_closes_at_its_deadline(
    system: LocalSystem,
) -> None:
    """buffer 4 with a 0.5 s timeout: client 4 takes 1 s, so each aggregation closes at its
    deadline with the three fast answers, client 4 missing, and the model goes on."""
    with Oodida(settings=system.client_settings("alice")) as o:
        result = o.submit({**SPEC, "iterations": 2, "buffer": 4, "timeout": 0.5}).wait(
            timeout=60, progress=False
        )
    assert result.status == "done"
    for it in result.iterations:
        assert it.ended_by == "deadline" and it.missing == (4,), it
        assert sorted(it.onboard) == [1, 2, 3] and it.staleness == {1: 0, 2: 0, 3: 0}
        assert 0.5 <= it.finished_at - it.started_at < 5
    assert result.iterations[1].value != result.iterations[0].value  # trained on from the new model
