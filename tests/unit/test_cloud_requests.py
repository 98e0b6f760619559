"""The cloud's one request path (``oodida_cloud/requests.py``), against a real Redis: every
message is decoded, its rejection logged, its token checked and its ownership checked once,
before its handler; each refusal is one log line, one reply and one ``Outcome``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from oodida_cloud.outcomes import Outcome
from oodida_cloud.requests import Route
from oodida_cloud.root import Cloud, build_cloud
from oodida_core.customcode.sandbox import Sandbox
from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.wire import (
    TASK_CANCEL,
    TASK_DEPLOY,
    TASK_FINISH_ITERATION,
    TASK_PURGE,
    TASK_START,
    TASK_VERSIONS,
    Request,
)
from oodida_core.security.auth import UserStore
from oodida_core.settings import Settings
from oodida_ops.redis_server import EmbeddedRedis

SPEC = {"mode": "stream", "signals": ["speed"], "onboard": "mean", "iterations": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("requests")) as srv:
        yield srv


@pytest.fixture(scope="module")
def cloud(server: EmbeddedRedis) -> Iterator[Cloud]:
    settings = Settings.from_env({}, redis_url=server.url)
    client = redis.Redis.from_url(server.url)
    sandbox = Sandbox(max_children=1)
    try:
        yield build_cloud(make_celery_app(settings, "oodida-cloud"), client, settings, sandbox=sandbox)
    finally:
        sandbox.close()
        client.close()


@pytest.fixture()
def tokens(cloud: Cloud) -> dict[str, str]:
    cloud.redis.flushdb()
    users = UserStore(cloud.redis, cloud.keys)
    return {name: users.add(name) for name in ("alice", "bob")}


def route(cloud: Cloud, task: str) -> Route:
    return next(r for r in cloud.routes if r.task == task)


def send(cloud: Cloud, task: str, *args: Any, **kwargs: Any) -> Outcome:
    return cloud.dispatcher(route(cloud, task), args, kwargs, "t-1")


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "oodida.cloud" and r.levelno >= level]


def reply(cloud: Cloud, request_id: str) -> dict[str, Any]:
    entries: Any = cloud.redis.xrange(cloud.keys.reply(request_id))
    assert len(entries) == 1, "one reply per request"
    answer: dict[str, Any] = json.loads(entries[0][1][b"reply"])
    return answer


def test_a_start_with_a_wrong_token_is_rejected_in_one_line_and_nothing_is_stored(
    cloud: Cloud, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    message = {"user": "alice", "token": "wrong", "request_id": "q1", "assignment_id": "a1", "spec": SPEC}
    with caplog.at_level(logging.INFO, logger="oodida.cloud"):
        assert send(cloud, TASK_START, message) is Outcome.REJECTED
    assert lines(caplog, logging.INFO) == ["start of assignment a1 by user 'alice' refused: wrong token"]
    assert reply(cloud, "q1")["error"] == "auth"
    assert cloud.store.get("a1") is None


def test_a_cancel_of_another_users_assignment_is_unknown_in_one_line_and_the_assignment_stays(
    cloud: Cloud, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cloud.store.create("a1", "bob", SPEC)
    message = {"user": "alice", "token": tokens["alice"], "request_id": "q1", "assignment_id": "a1"}
    with caplog.at_level(logging.INFO, logger="oodida.cloud"):
        assert send(cloud, TASK_CANCEL, message) is Outcome.UNKNOWN
    assert lines(caplog, logging.INFO) == ["cancel of a1 by 'alice' refused: no such assignment of that user"]
    assert reply(cloud, "q1")["error"] == "unknown"
    record = cloud.store.get("a1")
    assert record is not None and (record.user, record.status) == ("bob", "pending")


def test_a_purge_of_an_assignment_that_does_not_exist_is_unknown(
    cloud: Cloud, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    message = {"user": "alice", "token": tokens["alice"], "request_id": "q1", "assignment_id": "gone"}
    with caplog.at_level(logging.WARNING, logger="oodida.cloud"):
        assert send(cloud, TASK_PURGE, message) is Outcome.UNKNOWN
    assert lines(caplog) == ["purge of gone by 'alice' refused: no such assignment of that user"]
    assert reply(cloud, "q1")["message"] == "no assignment 'gone' of user 'alice'"


def test_a_start_under_another_users_assignment_id_is_rejected_and_their_record_stays(
    cloud: Cloud, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cloud.store.create("a1", "bob", SPEC)
    message = {
        "user": "alice",
        "token": tokens["alice"],
        "request_id": "q1",
        "assignment_id": "a1",
        "spec": {},
    }
    with caplog.at_level(logging.WARNING, logger="oodida.cloud"):
        assert send(cloud, TASK_START, message) is Outcome.REJECTED
    assert lines(caplog) == ["assignment a1: start by 'alice' refused, it belongs to another user"]
    answer = reply(cloud, "q1")
    assert (answer["ok"], answer["error"], answer["message"]) == (
        False,
        "refused",
        "assignment id a1 is taken",
    )
    assert cloud.store.user("a1") == "bob"


def test_a_deploy_under_another_users_deployment_id_is_rejected_and_stores_nothing(
    cloud: Cloud, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cloud.codestore.create_deployment("d1", "bob", "offboard", "bob.py")
    message = {
        "user": "alice",
        "token": tokens["alice"],
        "request_id": "q1",
        "deploy_id": "d1",
        "role": "offboard",
        "filename": "mine.py",
        "source": "def aggregate(values):\n    return 0\n",
    }
    with caplog.at_level(logging.WARNING, logger="oodida.cloud"):
        assert send(cloud, TASK_DEPLOY, message) is Outcome.REJECTED
    assert lines(caplog) == ["deployment d1: deploy by 'alice' refused, it belongs to another user"]
    assert reply(cloud, "q1")["error"] == "refused"
    record = cloud.codestore.deployment("d1")
    assert record is not None and (record.user, record.filename) == ("bob", "bob.py")
    assert cloud.codestore.offboard_version("alice") is None


@pytest.mark.parametrize(
    ("task", "args", "kwargs", "expected"),
    [
        (TASK_START, ({"user": "alice", "assignment_id": "a1"},), {}, "rejected a start message (task t-1, "),
        (TASK_START, ({"user": "alice"}, 2), {}, "takes one message argument; got 2 positional"),
        (TASK_CANCEL, (), {"message": {}}, "takes one message argument; got 0 positional and 1 keyword"),
        (TASK_VERSIONS, ("not a mapping",), {}, "rejected a versions message (task t-1): malformed"),
        (TASK_FINISH_ITERATION, (None, None), {}, "takes the answers and keywords only"),
        (TASK_FINISH_ITERATION, (None,), {"assignment_id": "a1"}, "rejected a finish_iteration message"),
    ],
)
def test_a_malformed_message_is_rejected_in_one_line_before_anything_is_read(
    cloud: Cloud,
    tokens: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    task: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    expected: str,
) -> None:
    with caplog.at_level(logging.INFO, logger="oodida.cloud"):
        assert send(cloud, task, *args, **kwargs) is Outcome.REJECTED
    [line] = lines(caplog, logging.INFO)
    assert line.startswith("rejected a") and expected in line
    assert cloud.redis.keys(cloud.keys.reply("*")) == []


def test_a_good_request_reaches_its_handler_with_no_warning(
    cloud: Cloud, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    message = {"user": "alice", "token": tokens["alice"], "request_id": "q1", "clients": [1]}
    with caplog.at_level(logging.WARNING, logger="oodida.cloud"):
        assert send(cloud, TASK_VERSIONS, message) is Outcome.OK
    assert lines(caplog) == []
    answer = reply(cloud, "q1")
    assert answer["ok"] is True and answer["value"] == {"offboard": None, "onboard": {"1": None}}


def test_every_library_request_is_authenticated_and_every_task_is_served_once(cloud: Cloud) -> None:
    tasks = [r.task for r in cloud.routes]
    assert len(tasks) == len(set(tasks)) == 8
    for r in cloud.routes:
        authenticated = r.action is not None
        assert authenticated == issubclass(r.model, Request), r.task
        assert r.task == TASK_FINISH_ITERATION or authenticated, r.task


def test_outcomes_read_as_the_words_handlers_returned_before_they_were_typed() -> None:
    words = {o.value for o in Outcome}
    assert {"rejected", "refused", "unknown", "duplicate", "running", "stored", "stale"} <= words
    assert {"redispatched", "cancelled", "failed", "done", "sent", "purged", "ok"} <= words
    assert Outcome.REJECTED == "rejected" and str(Outcome.STORED) == "stored"
    assert json.dumps(Outcome.CANCELLED) == '"cancelled"'
