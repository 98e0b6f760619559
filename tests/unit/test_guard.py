"""The guard at kombu's first read of a task-queue item: which items it refuses, why, and the
helpers every rejection's log line is made with.

The same checks run in real workers in tests/system/test_envelope_fuzz.py,
test_workflow_options.py and test_malformed_messages.py; here they are pure functions over
raw Redis items.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oodida_core.messaging.envelope import Refused, admit
from oodida_core.messaging.guard import clean, describe_origin, log_rejected, single_argument
from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.wire import (
    TASK_CANCEL,
    TASK_FINISH_ITERATION,
    TASK_INSTALL,
    TASK_ONBOARD,
    TASK_START,
    message_limit,
)

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
CHORD: dict[str, Any] = {
    "task": TASK_FINISH_ITERATION,
    "args": [],
    "kwargs": {"assignment_id": "a1", "iteration": 0},
    "options": {"queue": "cloud", "task_id": "cb-1", "group_id": "g1", "reply_to": "r", "argsrepr": "a1"},
    "subtask_type": None,
    "immutable": True,
}


def item(
    body: object = ([{"assignment_id": "a1"}], {}, EMBED),
    headers: dict[str, Any] | None = None,
    queue: str = "cloud",
    top: dict[str, Any] | None = None,
) -> bytes:
    """A raw Redis item as kombu's Redis transport stores a Celery task message."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    task = TASK_START if queue == "cloud" else TASK_ONBOARD
    envelope: dict[str, Any] = {
        "body": base64.b64encode(raw).decode(),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {"lang": "py", "task": task, "id": "t-1", "ignore_result": queue == "cloud" or None}
        if headers is None
        else headers,
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": "tag-1",
            "delivery_info": {"exchange": "x", "routing_key": "elsewhere"},
            "reply_to": "somewhere",
            "priority": 0,
        },
    }
    return json.dumps({k: v for k, v in {**envelope, **(top or {})}.items() if v is not ...}).encode()


def reason(raw: bytes, queue: str = "cloud") -> str:
    result = admit(raw, queue)
    assert isinstance(result, Refused), result
    assert "\n" not in result.reason
    return result.reason


def test_a_well_formed_task_message_is_admitted_with_properties_of_our_own() -> None:
    admitted = admit(item(), "cloud")
    assert isinstance(admitted, dict)
    props = admitted["properties"]
    assert props["delivery_info"] == {"exchange": "", "routing_key": "cloud"}  # restored here only
    assert props["delivery_tag"] != "tag-1" and "reply_to" not in props
    headers = {"lang": "py", "task": TASK_ONBOARD, "id": "h-1", "group": "g1", "group_index": 0}
    assert isinstance(
        admit(item(([{}], {}, {**EMBED, "chord": CHORD}), headers, "client.4"), "client.4"), dict
    )


CLOUD_HEADERS = {"lang": "py", "task": TASK_START, "id": "x"}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff\xfe", "not a JSON envelope"),
        (b"{not json", "not a JSON envelope"),
        (b"[" * 100_000 + b"]" * 100_000, "not a JSON envelope"),
        (b"[1, 2]", "JSON list, not an envelope"),
        (item(top={"properties": []}), "properties"),
        (item(top={"body": 5}), "body"),
        (item(top={"content-type": "application/x-python-serialize"}), "content-type"),
        (item(top={"content-encoding": "binary"}), "content-encoding"),
        (item(headers={}), "task: Field required"),
        (item(headers={"task": 5, "id": "x"}), "task"),
        (item(headers={"task": TASK_START}), "id: Field required"),
        (item(headers={**CLOUD_HEADERS, "eta": "2999-01-01"}), "eta"),
        (item(headers={**CLOUD_HEADERS, "timelimit": "long"}), "timelimit"),
        (item(headers={**CLOUD_HEADERS, "retries": "3"}), "retries"),
        (item(headers={**CLOUD_HEADERS, "args": [1]}), "args: Extra inputs"),
        (item(headers={**CLOUD_HEADERS, "compression": "application/x-bz2"}), "compression"),
        (item(headers={**CLOUD_HEADERS, "id": "x\ud800"}), "id"),
        (item(headers={**CLOUD_HEADERS, "task": "celery.group"}), "not served here"),
        (item(headers={**CLOUD_HEADERS, "task": TASK_ONBOARD}), "not served here"),
        (item(b"\xff\xfe"), "does not decode"),
        (item(b"{not json"), "does not decode"),
        (item("a string"), "the body is a str"),
        (item({"args": [1]}), "the body is a dict"),
        (item([[1], {}]), "the body is a list"),
        (item([5, {}, {}]), "arguments are a int"),
        (item([[1], [], {}]), "keyword arguments"),
        (item([[1], {}, 5]), "options are not a mapping"),
        (item([[1], {}, {"link": 1}]), "unknown options"),
        (item([[1], {}, {"callbacks": [{"task": TASK_ONBOARD}]}]), "'callbacks' is never honoured"),
        (item([[1], {}, {"errbacks": [{"task": TASK_ONBOARD}]}]), "'errbacks' is never honoured"),
        (item([[1], {}, {"chain": [{"task": TASK_ONBOARD}]}]), "'chain' is never honoured"),
        (item([[1], {}, {"chord": CHORD}]), "'chord' is never honoured"),
        (item(headers={**CLOUD_HEADERS, "ignore_result": False}), "ignore_result"),
        (item(headers={**CLOUD_HEADERS, "group": "g"}), "'group' is never honoured"),
    ],
)
def test_a_malformed_item_is_refused_saying_why(raw: bytes, fragment: str) -> None:
    assert fragment in reason(raw)


@pytest.mark.parametrize(
    ("chord", "fragment"),
    [
        ({**CHORD, "task": TASK_INSTALL}, "task"),
        ({**CHORD, "options": {**CHORD["options"], "queue": "client.1"}}, "queue"),
        ({**CHORD, "options": {**CHORD["options"], "link": [CHORD]}}, "link"),
        ({**CHORD, "options": {**CHORD["options"], "group_id": "other"}}, "group"),
        ({**CHORD, "args": [[{"forged": 1}]]}, "args"),
        ({**CHORD, "kwargs": {"assignment_id": "a1", "iteration": 0, "reason": "deadline"}}, "reason"),
    ],
)
def test_an_on_board_task_carries_only_its_iterations_callback_to_the_cloud(
    chord: dict[str, Any], fragment: str
) -> None:
    headers = {"lang": "py", "task": TASK_ONBOARD, "id": "h-1", "group": "g1", "group_index": 0}
    assert fragment in reason(item(([{}], {}, {**EMBED, "chord": chord}), headers, "client.1"), "client.1")


def test_the_size_is_checked_before_the_body_is_decoded() -> None:
    limit = message_limit(TASK_CANCEL)
    raw = item(b"\xff" * (limit + 1), {"lang": "py", "task": TASK_CANCEL, "id": "x"})
    assert f"{limit:,}" in reason(raw)
    too_big = reason(b"x" * (message_limit(TASK_ONBOARD) * 3 // 2), "client.1")  # unparsed
    assert f"limited to {message_limit(TASK_ONBOARD):,} bytes here" in too_big
    assert message_limit(TASK_CANCEL) < message_limit(TASK_START) < message_limit(TASK_ONBOARD)


_headers = st.dictionaries(
    st.sampled_from(["task", "id", "eta", "expires", "timelimit", "retries", "stamps", "args", "group", "x"]),
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.lists(st.integers(), max_size=3),
)
_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=2000, deadline=None)
@given(_headers, _bodies | st.binary(max_size=30), st.sampled_from(["cloud", "client.3", "reply.x"]))
def test_no_item_breaks_the_checks(headers: dict[str, Any], body: Any, queue: str) -> None:
    result = admit(item(body, headers), queue)
    assert isinstance(result, dict) or (isinstance(result, Refused) and "\n" not in result.reason)
    assert not (isinstance(result, Refused) and result.reason.startswith("the item cannot be read"))


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
