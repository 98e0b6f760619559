"""No PUBLISH on the remote-control channel stops a worker: kombu's pub/sub path handed any JSON
value to its delivery (``1`` or ``[]`` raised ``TypeError`` out of every worker's event loop).
Raw payloads that are not kombu messages, and a bounded fuzz of JSON values and of envelopes,
sent with a vehicle's and with the operator's credentials (analysts may not publish there),
leave every worker with its pid; each worker still answers inspection, logs one line per
dropped payload and serves the next assignment. Real Redis (6.2, ACLs on), real workers."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oodida_core.messaging.celery_app import make_celery_app
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

HOST = socket.gethostname()
WORKERS = {f"cloud-1@{HOST}", f"client-1@{HOST}", f"clients-2-3@{HOST}"}
CHANNEL = "/0.celery.pidbox"
SPEC = {
    "name": "after the payloads",
    "mode": "measurement",
    "clients": [1, 2, 3],
    "signals": "speed",
    "onboard": "max",
    "frequency": 1,
    "samples": 10,
    "iterations": 1,
}


def _b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


GOOD_PROPS = {"body_encoding": "base64", "delivery_tag": "t", "delivery_info": {"exchange": "celery.pidbox"}}
ENVELOPE = {"content-type": "application/json", "content-encoding": "utf-8", "headers": {}}
BAD_PAYLOADS: list[bytes | str] = [
    "1",
    "[]",
    "null",
    "true",
    '"text"',
    "{}",
    "[" * 100_000 + "]" * 100_000,  # RecursionError in json
    b"\xff\xfe not utf-8",
    "x" * 2_000_000,  # larger than any command
    json.dumps({"body": 1, "properties": GOOD_PROPS, **ENVELOPE}),
    json.dumps({"body": "e30=", **ENVELOPE}),
    json.dumps({"body": "e30=", "properties": [], **ENVELOPE}),
    json.dumps({"body": "e30=", "properties": {"delivery_info": 1}, **ENVELOPE}),
    json.dumps({"body": "e30=", "properties": {"delivery_info": {}}, **ENVELOPE}),
    json.dumps({"body": "not base64!", "properties": GOOD_PROPS, **ENVELOPE}),
    json.dumps({"body": _b64(1), "properties": GOOD_PROPS, **ENVELOPE}),
    json.dumps({"body": _b64([]), "properties": GOOD_PROPS, **ENVELOPE}),
    # a batch of "events" (what Celery sends on task.multi) where a command is expected
    json.dumps(
        {
            "body": _b64([{"method": "shutdown"}, {"type": "task-succeeded"}]),
            "properties": GOOD_PROPS,
            **ENVELOPE,
        }
    ),
    json.dumps({"body": _b64({"method": 1}), "properties": GOOD_PROPS, **ENVELOPE}),
    json.dumps({"body": _b64({"method": "ping", "arguments": []}), "properties": GOOD_PROPS, **ENVELOPE}),
    json.dumps({"body": _b64({"method": "ping", "reply_to": 1}), "properties": GOOD_PROPS, **ENVELOPE}),
    json.dumps(
        {
            "body": "gAN9cQAu",
            "properties": GOOD_PROPS,
            **ENVELOPE,
            "content-type": "application/x-python-serialize",
        }
    ),
    json.dumps({"body": "e30=", "properties": GOOD_PROPS, **ENVELOPE, "content-encoding": "latin-1"}),
    json.dumps({"body": "e30=", "properties": GOOD_PROPS, **ENVELOPE, "headers": []}),
    json.dumps({"body": "e30=", "properties": GOOD_PROPS, **ENVELOPE, "headers": {"compression": "zlib"}}),
    json.dumps({"body": "e30=", "properties": {**GOOD_PROPS, "body_encoding": "rot13"}, **ENVELOPE}),
]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
ENVELOPES = st.fixed_dictionaries(
    {},
    optional={
        "body": st.one_of(st.text(max_size=30), JSON, JSON.map(_b64)),
        "properties": st.one_of(JSON, st.fixed_dictionaries({}, optional={k: JSON for k in GOOD_PROPS})),
        "headers": JSON,
        "content-type": st.sampled_from(["application/json", "application/x-python-serialize", ""]),
        "content-encoding": st.sampled_from(["utf-8", "binary"]),
    },
)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(0, data_dir=tmp_path_factory.mktemp("pidbox"), acl=True) as system:
        system.start_edge("client-1", "1")
        system.start_edge("clients-2-3", "2-3")
        system.wait_ready(clients=3)
        yield system


def _pids(system: LocalSystem) -> dict[str, int]:
    app = make_celery_app(system.settings, "operator")
    try:
        for _ in range(10):  # a worker just started may miss the first broadcast
            found: dict[str, Any] = app.control.inspect(timeout=2.0).stats() or {}
            if set(found) >= WORKERS:
                assert all(
                    r == {"ok": "pong"} for r in (app.control.inspect(timeout=2.0).ping() or {}).values()
                )
                return {w: found[w]["pid"] for w in WORKERS}
        pytest.fail(f"not every worker answered: {sorted(found)}")
    finally:
        app.close()


def test_bad_payloads_on_the_remote_control_channel_stop_no_worker(system: LocalSystem) -> None:
    before = _pids(system)
    vehicle = redis.Redis.from_url(system.vehicle_urls["client-1"].url)
    operator = redis.Redis.from_url(system.url)
    analyst = redis.Redis.from_url(system.role_urls["analyst"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        analyst.publish(CHANNEL, "1")
    for payload in BAD_PAYLOADS:
        assert vehicle.publish(CHANNEL, payload) >= 3
        operator.publish(CHANNEL, payload)
    time.sleep(3)
    assert all(proc.poll() is None for proc in system.procs.values())
    assert _pids(system) == before
    for name in ("cloud-1", "client-1", "clients-2-3"):
        log = (system.log_dir / f"{name}.log").read_text()
        assert "Unrecoverable error" not in log, name
        assert "rejected a message (channel celery.pidbox): the payload is a JSON int" in log, name
    with Oodida(settings=system.client_settings("alice")) as o:
        result = o.submit(SPEC).wait(timeout=60, progress=False)
    assert result.status == "done"
    assert sorted(result.iterations[0].onboard) == [1, 2, 3]


def test_fuzzed_payloads_on_the_remote_control_channel_stop_no_worker(system: LocalSystem) -> None:
    before = _pids(system)
    vehicle = redis.Redis.from_url(system.vehicle_urls["client-1"].url)

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(JSON, ENVELOPES))
    def publish(value: object) -> None:
        vehicle.publish(CHANNEL, json.dumps(value))

    publish()
    time.sleep(3)
    assert all(proc.poll() is None for proc in system.procs.values())
    assert _pids(system) == before
    for name in ("cloud-1", "client-1", "clients-2-3"):
        assert "Unrecoverable error" not in (system.log_dir / f"{name}.log").read_text(), name
