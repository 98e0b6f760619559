"""A client's part in a quorum, on a real Redis: it reads the iteration's chord (how many
answers joined, whether it was closed), announces the quorum onto ``cloud`` once the count
reaches it and only while the chord is open, and answers ``skipped`` without reading for a
task of an iteration its quorum already closed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.keys import CLOUD_QUEUE, Keys, chord_group_id
from oodida_core.protocol.wire import TASK_FINISH_ITERATION
from oodida_core.settings import Settings
from oodida_core.state.chords import progress
from oodida_edge.quorum import QuorumWatch
from oodida_edge.runner import OnboardRunner, edge_delay
from oodida_ops.redis_server import EmbeddedRedis


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("quorum-edge")) as srv:
        yield srv


@pytest.fixture()
def app(server: EmbeddedRedis) -> Iterator[Celery]:
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    client.close()
    app = make_celery_app(Settings.from_env(redis_url=server.url), "edge-test", edge=True)
    yield app
    app.close()


def join(app: Celery, aid: str, index: int, n: int, *, closed: bool = False) -> None:
    """What ``n`` answers joining the chord of iteration ``index`` leave in the backend."""
    backend: Any = app.backend
    group = chord_group_id(aid, index)
    client = backend.client
    for i in range(n):
        client.zadd(backend.get_key_for_group(group, ".j"), {f"answer-{i}": i})
    if closed:
        client.set(backend.get_key_for_group(group, ".c"), "done")


def finish_messages(app: Celery) -> list[dict[str, Any]]:
    client: Any = app.backend.client
    bodies = []
    for raw in client.lrange(CLOUD_QUEUE, 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == TASK_FINISH_ITERATION
        bodies.append(message["headers"])
    return bodies


def answer(aid: str = "a1", index: int = 0, status: str = "ok") -> dict[str, Any]:
    return {"assignment_id": aid, "iteration": index, "client_id": 1, "status": status}


def test_progress_reads_the_joined_answers_and_the_done_marker(app: Celery) -> None:
    client: Any = app.backend.client
    assert progress(app, client, "a1", 0) == (0, False)
    join(app, "a1", 0, 3)
    assert progress(app, client, "a1", 0) == (3, False)
    join(app, "a1", 0, 0, closed=True)
    assert progress(app, client, "a1", 0) == (3, True)
    assert progress(app, client, "a1", 1) == (0, False)  # another iteration's chord


def test_the_client_whose_answer_makes_the_quorum_announces_it_onto_cloud(app: Celery) -> None:
    watch = QuorumWatch(app)
    join(app, "a1", 0, 1)
    assert not watch.answered(answer(), quorum=2)
    assert finish_messages(app) == []
    join(app, "a1", 0, 2)
    assert watch.answered(answer(), quorum=2)
    (sent,) = finish_messages(app)
    assert "'reason': 'quorum'" in sent["kwargsrepr"] and "'iteration': 0" in sent["kwargsrepr"]


def test_no_announcement_once_the_chord_was_closed_or_for_a_skipped_answer(app: Celery) -> None:
    watch = QuorumWatch(app)
    join(app, "a1", 0, 5, closed=True)
    assert not watch.answered(answer(), quorum=2)
    join(app, "a1", 1, 5)
    assert not watch.answered(answer(index=1, status="skipped"), quorum=2)
    assert not watch.answered({"status": "ok", "assignment_id": 7, "iteration": 1}, quorum=2)
    assert finish_messages(app) == []


class _NoSensors:
    """A source that must not be read: the task should be skipped before it reads."""

    live = False

    def read(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sensors were read")


class _Code:
    """No custom code: the runner only needs its store attribute."""

    store = None


def task(aid: str, index: int, quorum: int | None) -> dict[str, Any]:
    return {
        "assignment_id": aid,
        "user": "u",
        "iteration": index,
        "client_id": 1,
        "method": "average",
        "signals": ["speed"],
        "samples": 5,
        "frequency": 1,
        "deadline": time.time() + 60,
        "quorum": quorum,
    }


def test_a_task_of_an_iteration_its_quorum_closed_is_skipped_without_reading(
    app: Celery, server: EmbeddedRedis
) -> None:
    client = redis.Redis.from_url(server.url)
    runner = OnboardRunner(client, Keys(), _NoSensors(), code=_Code())  # type: ignore[arg-type]
    watch = QuorumWatch(app, client, Keys())
    runner.closed = watch.closed
    # the chord's done marker, which any vehicle may write, is not the cloud's word: the task reads
    join(app, "a2", 3, 2, closed=True)
    out = runner.run(task("a2", 3, quorum=2))
    assert out["status"] == "failed" and "the sensors were read" in out["error"]
    # the cloud's own marker (set when it closed the iteration at its quorum): skipped
    client.set(Keys().iteration_closed("a2", 3), "quorum")
    out = runner.run(task("a2", 3, quorum=2))
    assert out["status"] == "skipped" and out["error"] == "the iteration closed at its quorum"
    # without a quorum the chord's state is not consulted: the task reads (here: fails loudly)
    out = runner.run(task("a2", 3, quorum=None))
    assert out["status"] == "failed" and "the sensors were read" in out["error"]
    client.close()


@pytest.mark.parametrize(("raw", "seconds"), [("", 0.0), ("0", 0.0), ("2.5", 2.5), (" 1 ", 1.0)])
def test_the_edge_delay_is_read_from_its_variable(raw: str, seconds: float) -> None:
    assert edge_delay({"OODIDA_EDGE_DELAY": raw}) == seconds
    assert edge_delay({}) == 0.0


@pytest.mark.parametrize("raw", ["-1", "x", "nan", "inf", "3601"])
def test_a_bad_edge_delay_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match=r"\$OODIDA_EDGE_DELAY must be a number of seconds from 0 to 3600"):
        edge_delay({"OODIDA_EDGE_DELAY": raw})


def test_a_buffered_answer_is_announced_every_time_and_a_skipped_one_never(app: Celery) -> None:
    watch = QuorumWatch(app)
    assert watch.buffered(answer(index=4))
    assert watch.buffered(answer(index=4, status="failed"))
    assert not watch.buffered(answer(index=5, status="skipped"))
    sent = finish_messages(app)
    assert len(sent) == 2 and all("'reason': 'buffer'" in m["kwargsrepr"] for m in sent)
