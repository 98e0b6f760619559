"""Raw bytes on the task queues, under ``--acl``, pushed with redis-py and each role's own
credentials: broken kombu envelopes (not JSON, not an object, missing or wrong-typed
properties, hostile headers, unknown content type, encoding, compression or task, a body that
is not base64, huge items) and Hypothesis-generated ones. kombu parses the envelope before
Celery sees it, so the guard sits there (oodida_core/messaging/kombu_guard.py, envelope.py): each item is
dropped with one log line naming the queue and the reason, nothing stays queued or
unacknowledged, and every process of the system keeps its pid and serves the next assignment.
"""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import redis
from envelope_kit import NULL_EMBED, all_alive, count_lines, drained, dumps, envelope, pids, serves, wait_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from oodida_core.protocol.wire import TASK_CANCEL, TASK_ONBOARD
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

USER = "fuzzer"
CLIENT_QUEUE = "client.2"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(2, data_dir=tmp_path_factory.mktemp("envelopes"), acl=True) as s:
        yield s


@pytest.fixture(scope="module")
def o(system: LocalSystem) -> Iterator[Oodida]:
    with Oodida(settings=system.client_settings(USER)) as o:
        yield o


@pytest.fixture(scope="module")
def before(system: LocalSystem, o: Oodida) -> dict[str, int]:
    serves(system, o, pids(system), [1, 2])
    return pids(system)


@pytest.fixture(scope="module")
def admin(system: LocalSystem) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(system.url)
    yield client
    client.close()


def as_role(system: LocalSystem, role: str) -> redis.Redis:
    return redis.Redis.from_url(system.role_urls[role])


def broken(task: str, queue: str) -> list[tuple[str, bytes]]:
    """(case, raw item): each one stopped a worker before the guard moved into kombu's read."""
    e = envelope(task, queue)
    props = e["properties"]
    cases: list[tuple[str, object]] = [
        ("not_json", b"hello, worker"),
        ("not_utf8", b"\xff\xfe\x00\x81"),
        ("json_array", [1, 2, 3]),
        ("json_string", "an envelope"),
        ("json_null", None),
        ("json_number", 1e308),
        ("nested_too_deep", b"[" * 100_000 + b"]" * 100_000),
        ("objects_too_deep", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        ("empty_object", {}),
        ("no_properties", {**e, "properties": ...}),
        ("properties_a_list", {**e, "properties": []}),
        ("no_delivery_tag", {**e, "properties": {**props, "delivery_tag": ...}}),
        ("delivery_tag_a_number", {**e, "properties": {**props, "delivery_tag": 5}}),
        ("no_delivery_info", {**e, "properties": {**props, "delivery_info": ...}}),
        ("delivery_info_a_string", {**e, "properties": {**props, "delivery_info": "cloud"}}),
        ("delivery_info_no_routing_key", {**e, "properties": {**props, "delivery_info": {}}}),
        ("priority_text", {**e, "properties": {**props, "priority": "high"}}),
        ("body_encoding_unknown", {**e, "properties": {**props, "body_encoding": "rot13"}}),
        ("body_not_base64", {**e, "body": "@@@ not base64 @@@"}),
        ("body_a_number", {**e, "body": 5}),
        ("body_base64_of_garbage", {**e, "body": base64.b64encode(b"\x00\xff{{").decode()}),
        ("body_not_the_triple", envelope(task, queue, {"args": [1]})),
        ("headers_a_string", {**e, "headers": "task=start"}),
        ("headers_missing", {**e, "headers": ...}),
        ("compression_bz2", envelope(task, queue, header_change={"compression": "application/x-bz2"})),
        ("compression_unknown", envelope(task, queue, header_change={"compression": "x-nope"})),
        (
            "content_type_pickle",
            envelope(
                task, queue, raw_body=pickle.dumps(1), top={"content-type": "application/x-python-serialize"}
            ),
        ),
        (
            "content_type_yaml",
            envelope(task, queue, raw_body=b"a: 1", top={"content-type": "application/x-yaml"}),
        ),
        ("content_type_missing", envelope(task, queue, top={"content-type": ...})),
        ("content_encoding_binary", envelope(task, queue, top={"content-encoding": "binary"})),
        ("content_encoding_unknown", envelope(task, queue, top={"content-encoding": "ebcdic"})),
        ("unknown_task", envelope("oodida.cloud.nope", queue)),
        ("celery_builtin_task", envelope("celery.group", queue)),
        ("task_a_number", envelope(task, queue, header_change={"task": 5})),
        ("id_a_list", envelope(task, queue, header_change={"id": ["x"]})),
        ("id_with_a_surrogate", envelope(task, queue, task_id="x\ud800y")),
        ("eta_far_away", envelope(task, queue, header_change={"eta": "2999-01-01T00:00:00+00:00"})),
        ("expires_garbage", envelope(task, queue, header_change={"expires": "never"})),
        ("timelimit_text", envelope(task, queue, header_change={"timelimit": "long"})),
        ("retries_text", envelope(task, queue, header_change={"retries": "many"})),
        ("stamps_a_list", envelope(task, queue, header_change={"stamps": [1]})),
        ("old_protocol", envelope(task, queue, header_change={"args": [1], "kwargs": {}})),
        ("embed_junk", envelope(task, queue, [[{}], {}, 5])),
        ("extra_envelope_key", {**e, "surprise": 1}),
        ("huge_junk", b"x" * (40 * 1024 * 1024)),
        (
            "huge_body",
            envelope(
                TASK_CANCEL if queue == "cloud" else task,
                queue,
                raw_body=b"[" + b" " * (20 * 1024 * 1024) + b"]",
            ),
        ),
    ]
    return [(name, item if isinstance(item, bytes) else dumps(_strip(item))) for name, item in cases]


def _strip(value: Any) -> Any:
    """``value`` without the keys whose value is ``...`` (removed)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not ...}
    return value


PUSHERS = {"cloud": ("analyst", "edge", "cloud"), CLIENT_QUEUE: ("edge", "cloud")}


@pytest.mark.parametrize(
    ("queue", "task", "log"),
    [("cloud", "oodida.cloud.start", "cloud-1"), (CLIENT_QUEUE, TASK_ONBOARD, "fleet")],
)
def test_broken_envelopes_from_every_role_are_dropped_with_one_line_each_and_every_process_goes_on(
    system: LocalSystem,
    o: Oodida,
    admin: redis.Redis,
    before: dict[str, int],
    queue: str,
    task: str,
    log: str,
) -> None:
    cases = broken(task, queue)
    needle = f"rejected a message (queue {queue}"
    for role in PUSHERS[queue]:
        pusher = as_role(system, role)
        try:
            for name, item in cases:
                seen = count_lines(system, log, needle)
                pusher.lpush(queue, item)
                wait_for(
                    partial(lambda n: count_lines(system, log, needle) == n, seen + 1),
                    what=f"{name} from {role} rejected on {queue}",
                )
                assert all_alive(system, before), f"{name} from {role} stopped a process"
        finally:
            pusher.close()
        wait_for(lambda: drained(admin, queue), what=f"{queue} drained")
    serves(system, o, before, [1, 2])


def test_the_roles_that_may_not_push_onto_a_queue_are_refused_by_redis(system: LocalSystem) -> None:
    for role, queue in [
        ("analyst", CLIENT_QUEUE),
        ("analyst-read", "cloud"),
        ("analyst-read", CLIENT_QUEUE),
        ("edge-read", "cloud"),
        ("edge-read", CLIENT_QUEUE),
    ]:
        client = as_role(system, role)
        try:
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.lpush(queue, b"x")
        finally:
            client.close()


# ---------------------------------------------------------------- fuzz

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
TOP = ["body", "content-type", "content-encoding", "headers", "properties"]
HEADER_KEYS = [
    "task",
    "id",
    "lang",
    "eta",
    "expires",
    "group",
    "timelimit",
    "retries",
    "stamps",
    "compression",
    "ignore_result",
    "root_id",
]
PROPERTY_KEYS = ["delivery_tag", "delivery_info", "body_encoding", "priority", "reply_to", "correlation_id"]


@st.composite
def mutated(draw: st.DrawFn, queue: str) -> bytes:
    """A well-formed envelope with a few fields replaced or removed at random."""
    task = "oodida.cloud.cancel" if queue == "cloud" else TASK_ONBOARD
    body = draw(st.one_of(st.just([[{"assignment_id": "a1"}], {}, NULL_EMBED]), JSON))
    message = envelope(task, queue, body)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "headers", "properties", "delivery_info", "body"]))
        value = draw(st.one_of(st.just(...), JSON))
        if where == "top":
            message[draw(st.sampled_from(TOP))] = value
        elif where == "headers" and isinstance(message.get("headers"), dict):
            message["headers"][draw(st.sampled_from(HEADER_KEYS))] = value
        elif where == "properties" and isinstance(message.get("properties"), dict):
            message["properties"][draw(st.sampled_from(PROPERTY_KEYS))] = value
        elif where == "delivery_info" and isinstance(message.get("properties"), dict):
            message["properties"]["delivery_info"] = value
        else:
            raw = draw(st.one_of(st.binary(max_size=64), JSON.map(lambda v: json.dumps(v).encode())))
            message["body"] = base64.b64encode(raw).decode() if draw(st.booleans()) else raw.decode("latin-1")
    return dumps(_strip(message))


def items(queue: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=256),
        JSON.map(lambda v: json.dumps(v).encode()),
        mutated(queue),
    )


@pytest.mark.parametrize(("queue", "roles"), list(PUSHERS.items()))
def test_fuzzed_envelopes_from_every_role_stop_no_worker(
    system: LocalSystem,
    o: Oodida,
    admin: redis.Redis,
    before: dict[str, int],
    queue: str,
    roles: tuple[str, ...],
) -> None:
    pushers = {role: as_role(system, role) for role in roles}

    @settings(
        max_examples=200,
        deadline=10_000,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(item=items(queue), role=st.sampled_from(roles))
    def push(item: bytes, role: str) -> None:
        pushers[role].lpush(queue, item)
        wait_for(lambda: drained(admin, queue), timeout=20, what=f"{queue} drained")
        assert all_alive(system, before), f"{item[:200]!r} from {role} stopped a process"

    try:
        push()
    finally:
        for pusher in pushers.values():
            pusher.close()
    serves(system, o, before, [1, 2])
