"""The guard in front of Celery's consumer: which messages it refuses and what it logs.

The same checks run in real workers in tests/system/test_malformed_messages.py; here they are
pure functions over kombu messages.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu.message import Message

from oodida_core.errors import MessageError
from oodida_core.guard import clean, describe_origin, log_rejected, message_problem, single_argument
from oodida_core.wire import TASK_CANCEL, TASK_ONBOARD, TASK_START, message_limit

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def message(
    body: object = ([{"assignment_id": "a1"}], {}, EMBED),
    headers: object = None,
    content_type: str = "application/json",
) -> Message:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(
        body=raw,
        content_type=content_type,
        content_encoding="utf-8",
        headers={"task": TASK_START, "id": "t-1", "lang": "py"} if headers is None else headers,
        delivery_info={"routing_key": "cloud"},
        accept=["application/json"],
    )


def test_a_well_formed_task_message_passes() -> None:
    assert message_problem(message()) is None
    chord = {"task": "oodida.cloud.finish_iteration", "args": [], "kwargs": {}, "options": {}}
    assert message_problem(message(([{}], {}, {**EMBED, "chord": chord}))) is None


@pytest.mark.parametrize(
    ("msg", "fragment"),
    [
        (message(headers={}), "names no task"),
        (message(headers={"task": 5, "id": "x"}), "names no task"),
        (message(headers={"task": TASK_START}), "no task id"),
        (message(headers={"task": TASK_START, "id": "x", "eta": ["tomorrow"]}), "header 'eta'"),
        (message(headers={"task": TASK_START, "id": "x", "timelimit": "long"}), "timelimit"),
        (message(headers={"task": TASK_START, "id": "x", "retries": "3"}), "retries"),
        (message(headers={"task": TASK_START, "id": "x", "args": [1]}), "old protocol"),
        (message(b"\xff\xfe"), "does not decode"),
        (message(b"{not json"), "does not decode"),
        (message(b"[" * 100_000 + b"]" * 100_000), "does not decode"),
        (message("a string"), "the body is a str"),
        (message({"args": [1]}), "the body is a dict"),
        (message([[1], {}]), "the body is a list"),
        (message([5, {}, {}]), "arguments are a int"),
        (message([[1], [], {}]), "keyword arguments"),
        (message([[1], {}, 5]), "options are not a mapping"),
        (message([[1], {}, {"link": 1}]), "unknown options"),
        (message([[1], {}, {"callbacks": [{"x": 1}]}]), "'callbacks' is not a list of signatures"),
        (message([[1], {}, {"chord": "finish"}]), "'chord' is not a signature"),
        (message(content_type="application/x-python-serialize"), "content type"),
    ],
)
def test_a_malformed_message_is_refused_saying_why(msg: Message, fragment: str) -> None:
    problem = message_problem(msg)
    assert problem is not None and fragment in problem


def test_the_size_is_checked_before_the_body_is_decoded() -> None:
    limit = message_limit(TASK_START)
    problem = message_problem(message(b"\xff" * (limit + 1)))
    assert problem is not None and f"{limit + 1:,} bytes" in problem
    assert message_limit(TASK_CANCEL) < message_limit(TASK_START) < message_limit(TASK_ONBOARD)
    assert message_limit("no.such.task") == 1024 * 1024


_headers = st.dictionaries(
    st.sampled_from(["task", "id", "eta", "expires", "timelimit", "retries", "stamps", "args", "group", "x"]),
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.lists(st.integers(), max_size=3),
)
_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=10 * settings.default.max_examples, deadline=None)
@given(_headers, _bodies | st.binary(max_size=30))
def test_no_message_breaks_the_checks(headers: dict[str, Any], body: Any) -> None:
    msg = message(body, headers)
    problem = message_problem(msg)
    assert problem is None or (isinstance(problem, str) and "\n" not in problem)


def test_what_is_readable_of_a_message_is_named_and_nothing_forges_a_line() -> None:
    readable = {"assignment_id": "a1", "user": "alice", "client_id": 3, "iteration": 0, "x": 1}
    assert describe_origin(readable, "t-9") == "task t-9, assignment a1, user alice, client 3, iteration 0"
    assert describe_origin({"user": [5], "client_id": True, "iteration": "", "x": 1}) == "nothing readable"
    assert describe_origin(["not", "a", "mapping"]) == "nothing readable"
    forged = describe_origin({"user": "eve\n2026-01-01 WARNING fake line"})
    assert "\n" not in forged and "\\x0a" in forged
    assert len(clean("x" * 10_000)) == 80


def test_a_rejection_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("oodida.test")
    with caplog.at_level(logging.WARNING, logger="oodida.test"):
        log_rejected(
            log, "a start", {"assignment_id": "a1", "user": "bob"}, MessageError("bad\nthing"), "t-1"
        )
    (record,) = caplog.records
    assert (
        record.getMessage() == "rejected a start message (task t-1, assignment a1, user bob): bad\\x0athing"
    )


def test_a_task_takes_exactly_one_message() -> None:
    assert single_argument("t", ({"a": 1},), {}) == {"a": 1}
    for args, kwargs in [((), {}), ((1, 2), {}), ((1,), {"extra": 2}), ((), {"message": 1})]:
        with pytest.raises(MessageError, match="takes one message argument"):
            single_argument("t", args, kwargs)
