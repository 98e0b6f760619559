"""Malformed messages put straight on the ``cloud`` queue and on a client queue.

Wrong arguments (through Celery's own ``send_task``) and garbage (raw kombu publishes: bodies
that are not JSON, not Celery's [args, kwargs, options], the wrong content type, no task
header, bad headers, 20 MB payloads, unknown task names). Broken envelopes pushed with raw
redis-py are in test_envelope_fuzz.py, workflow options in test_workflow_options.py.
Each one must be rejected and logged with what can be read of it, must not stop or restart a
worker (its pid stays, and it serves a normal assignment right after), must not stay queued to
come back (no poison message), and must never reach user code: a custom module raises a marker
on one input size, and the marker shows up only for the one well-formed task sent as a control.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection, Producer, Queue

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.wire import (
    TASK_AUTHENTICATE,
    TASK_CANCEL,
    TASK_DEPLOY,
    TASK_FINISH_ITERATION,
    TASK_ONBOARD,
    TASK_ROLLBACK,
    TASK_START,
    TASK_VERSIONS,
    SubmitRequest,
)
from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

USER = "prober"
MARKER = "CUSTOM-CODE-RAN"
# Raises the marker on 77 readings, blows its memory on 79, else answers: the dry run passes.
MODULE = f"""
def custom_code(x):
    n = len(x) if isinstance(x, list) else -1
    if n == 77:
        raise ValueError("{MARKER}")
    if n == 79:
        return len("x" * 10 ** 11)
    return float(n)
"""
QUICK = {**LISTING_1_1, "samples": 10}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(2, data_dir=tmp_path_factory.mktemp("malformed")) as s:
        yield s


@pytest.fixture(scope="module")
def o(system: LocalSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oodida]:
    with Oodida(system.url, user=USER, token=system.token(USER)) as o:
        module = tmp_path_factory.mktemp("module") / "marker.py"
        module.write_text(MODULE)
        report = o.deploy_onboard(module).wait(timeout=60)
        assert sorted(report.accepted) == [1, 2]
        yield o


@pytest.fixture(scope="module")
def app(system: LocalSystem) -> Iterator[Celery]:
    app = make_celery_app(system.settings, "prober")
    yield app
    app.close()


@pytest.fixture(scope="module")
def pids(system: LocalSystem, o: Oodida) -> dict[str, object]:
    """Who serves now: the cloud process and each client's worker process."""
    return {"cloud": system.procs["cloud-1"].pid, "clients": {c.client_id: c.pid for c in o.clients()}}


def serves_as_before(system: LocalSystem, o: Oodida, pids: dict[str, object]) -> None:
    """The same processes are alive and answer a normal assignment on both clients."""
    result = o.submit(QUICK).wait(timeout=60, progress=False)
    assert result.status == "done" and sorted(result.iterations[0].onboard) == [1, 2]
    assert system.procs["cloud-1"].poll() is None and system.procs["fleet"].poll() is None
    assert system.procs["cloud-1"].pid == pids["cloud"]
    assert {c.client_id: c.pid for c in o.clients()} == pids["clients"]


def log_line(system: LocalSystem, name: str, *needles: str, timeout: float = 30.0) -> str:
    """The first line of a worker's log holding every needle (waiting for it to be written)."""
    path = system.log_dir / f"{name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            if all(n in line for n in needles):
                return line
        time.sleep(0.1)
    raise AssertionError(f"no line with {needles} in {path} within {timeout}s")


def not_queued(system: LocalSystem, text: str) -> None:
    """No queue and no unacknowledged-message record still holds ``text``: it will not return."""
    client = redis.Redis.from_url(system.url)
    try:
        for key in ("unacked", "cloud", "client.1", "client.2"):
            kind = client.type(key)
            values = (
                client.hvals(key) if kind == b"hash" else client.lrange(key, 0, -1) if kind == b"list" else []
            )
            assert not any(text.encode() in v for v in values), f"{text} still in {key}"
    finally:
        client.close()


def publish(system: LocalSystem, queue: str, body: bytes, headers: dict[str, Any], content_type: str) -> None:
    with Connection(system.url) as conn:
        Producer(conn).publish(
            body,
            routing_key=queue,
            exchange="",
            headers=headers,
            content_type=content_type,
            content_encoding="utf-8",
            declare=[Queue(queue, routing_key=queue)],
        )


def task_headers(task: str, task_id: str, **extra: Any) -> dict[str, Any]:
    return {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None, **extra}


# ---------------------------------------------------------------- wrong arguments, via Celery

WRONG_ARGUMENTS = [
    (TASK_START, (1, 2, 3), {}, "takes one message argument"),
    (TASK_START, (), {"message": {}}, "takes one message argument"),
    (TASK_START, ({"assignment_id": "m1", "user": USER},), {}, "spec: Field required"),
    (TASK_START, ({"assignment_id": "m2", "user": USER, "spec": {}, "extra": 1},), {}, "Extra inputs"),
    (TASK_START, ({"assignment_id": 5, "user": ["x"], "spec": "s"},), {}, "assignment_id: Input should be"),
    (TASK_START, ({"assignment_id": "no spaces!", "user": USER, "spec": {}},), {}, "assignment_id: String"),
    (TASK_START, ({"assignment_id": "m3", "user": "eve\nforged", "spec": {}},), {}, "user: String"),
    (TASK_CANCEL, ({"assignment_id": "m4"},), {}, "malformed CancelRequest"),
    (TASK_AUTHENTICATE, (1, 2), {}, "takes one message argument"),
    (TASK_ROLLBACK, ({"user": USER, "role": "sideways"},), {}, "malformed RollbackRequest"),
    (TASK_VERSIONS, ({"user": USER, "clients": "all"},), {}, "malformed VersionsRequest"),
    (
        TASK_DEPLOY,
        ({"deploy_id": "d1", "user": USER, "role": "up", "filename": "m.py", "source": ""},),
        {},
        "role",
    ),
    (
        TASK_FINISH_ITERATION,
        ("not a list",),
        {"assignment_id": "m5", "iteration": -1},
        "malformed FinishIteration",
    ),
    (TASK_FINISH_ITERATION, (None,), {"assignment_id": "m6", "iteration": 0, "reason": "bored"}, "reason"),
    (TASK_FINISH_ITERATION, (None, 2), {"assignment_id": "m7", "iteration": 0}, "answers and keywords only"),
]


@pytest.mark.parametrize(("task", "args", "kwargs", "why"), WRONG_ARGUMENTS)
def test_wrong_arguments_for_a_cloud_task_are_logged_and_dropped_and_the_cloud_goes_on(
    system: LocalSystem,
    o: Oodida,
    app: Celery,
    pids: dict[str, object],
    task: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    why: str,
) -> None:
    task_id = f"wrong-{uuid.uuid4().hex[:8]}"
    app.send_task(task, args=args, kwargs=kwargs, queue="cloud", task_id=task_id, ignore_result=True)
    line = log_line(system, "cloud-1", task_id)
    assert "WARNING" in line and "rejected a" in line and why in line
    readable = args[0] if args and isinstance(args[0], dict) else kwargs
    if isinstance(readable.get("assignment_id"), str):
        assert f"assignment {readable['assignment_id']}" in line  # what can be read, is named
    assert f"[{task_id}] raised unexpected" not in (system.log_dir / "cloud-1.log").read_text()
    serves_as_before(system, o, pids)


# ---------------------------------------------------------------- garbage, via kombu

GARBAGE: list[tuple[str, bytes, dict[str, Any] | None, str, str]] = [
    # (case, body, extra headers or None for no task headers at all, content type, logged reason)
    ("not_utf8", b"\xff\xfe\x00garbage", {}, "application/json", "does not decode"),
    ("not_json", b"{{{ not json", {}, "application/json", "does not decode"),
    ("too_deep", b"[" * 50_000 + b"]" * 50_000, {}, "application/json", "does not decode"),
    ("json_string", b'"hello"', {}, "application/json", "the body is a str"),
    ("json_object", b'{"assignment_id": "g1"}', {}, "application/json", "the body is a dict"),
    ("short_list", b"[[1], {}]", {}, "application/json", "the body is a list"),
    ("args_not_a_list", b"[5, {}, {}]", {}, "application/json", "arguments are a int"),
    ("kwargs_not_a_map", b"[[1], [2], {}]", {}, "application/json", "keyword arguments"),
    ("options_junk", b"[[1], {}, 5]", {}, "application/json", "options are not a mapping"),
    ("callbacks_junk", b'[[1], {}, {"callbacks": [{"x": 1}]}]', {}, "application/json", "never honoured"),
    ("pickle", b"\x80\x04K\x01.", {}, "application/x-python-serialize", "content-type"),
    ("yaml", b"a: 1", {}, "application/x-yaml", "content-type"),
    ("old_protocol", b'{"args": [1], "kwargs": {}}', {"args": [1]}, "application/json", "args: Extra inputs"),
    ("bad_timelimit", b"[[1], {}, {}]", {"timelimit": "forever"}, "application/json", "timelimit"),
    ("no_task_header", b"[[1], {}, {}]", None, "application/json", "task: Field required"),
]


def _publish_garbage(system: LocalSystem, queue: str, task: str, case: tuple[Any, ...]) -> str:
    name, body, extra, content_type, _why = case
    task_id = f"garbage-{name}-{uuid.uuid4().hex[:6]}"
    headers = {"id": task_id} if extra is None else task_headers(task, task_id, **extra)
    publish(system, queue, body, headers, content_type)
    return task_id


@pytest.mark.parametrize("case", GARBAGE, ids=[c[0] for c in GARBAGE])
def test_garbage_on_the_cloud_queue_is_logged_and_deleted_and_the_cloud_goes_on(
    system: LocalSystem, o: Oodida, pids: dict[str, object], case: tuple[Any, ...]
) -> None:
    task_id = _publish_garbage(system, "cloud", TASK_START, case)
    line = log_line(system, "cloud-1", task_id, "rejected a message")
    assert case[-1] in line and "queue cloud" in line and "deleted" in line
    serves_as_before(system, o, pids)
    not_queued(system, task_id)


@pytest.mark.parametrize("case", GARBAGE[::2], ids=[c[0] for c in GARBAGE[::2]])
def test_garbage_on_a_client_queue_is_logged_and_deleted_and_the_client_goes_on(
    system: LocalSystem, o: Oodida, pids: dict[str, object], case: tuple[Any, ...]
) -> None:
    task_id = _publish_garbage(system, "client.1", TASK_ONBOARD, case)
    line = log_line(system, "fleet", task_id, "rejected a message")
    assert case[-1] in line and "queue client.1" in line
    serves_as_before(system, o, pids)
    not_queued(system, task_id)


def test_unknown_task_names_are_dropped_by_the_guard_with_one_line_and_the_workers_go_on(
    system: LocalSystem, o: Oodida, app: Celery, pids: dict[str, object]
) -> None:
    for name, queue in [
        ("oodida.cloud.nope", "cloud"),
        ("oodida.edge.nope", "client.2"),
        (TASK_START, "client.1"),  # a cloud task on a client's queue: unknown there
        (TASK_ONBOARD, "cloud"),
        ("celery.group", "cloud"),  # Celery's own canvas tasks publish what they are given
    ]:
        task_id = f"unknown-{uuid.uuid4().hex[:8]}"
        app.send_task(name, args=({"assignment_id": "u1"},), queue=queue, task_id=task_id)
        log = "cloud-1" if queue == "cloud" else "fleet"
        line = log_line(system, log, f"id {task_id}")
        assert f"rejected a message (queue {queue}, task {name}" in line and "is not served here" in line
        not_queued(system, task_id)
        assert "Received unregistered task" not in (system.log_dir / f"{log}.log").read_text()
    serves_as_before(system, o, pids)


# ---------------------------------------------------------------- size

HUGE = 20 * 1024 * 1024


def test_huge_messages_are_refused_before_they_are_decoded_or_stored(
    system: LocalSystem, o: Oodida, app: Celery, pids: dict[str, object]
) -> None:
    spec = {**LISTING_1_1, "description": "x" * HUGE}
    start = SubmitRequest(assignment_id="huge1", user=USER, spec=spec).to_wire()
    app.send_task(TASK_START, args=(start,), queue="cloud", task_id="huge-start", ignore_result=True)
    onboard = {"assignment_id": "huge2", "user": USER, "model": "x" * HUGE}
    app.send_task(TASK_ONBOARD, args=(onboard,), queue="client.2", task_id="huge-onboard")
    cloud = log_line(system, "cloud-1", "huge-start")
    # refused by the start task's own limit on the raw item, before it is parsed (27.9 MB as an envelope)
    assert "messages are limited to 4,194,304 bytes" in cloud and "27,9" in cloud
    edge = log_line(system, "fleet", "huge-onboard")
    assert "messages are limited to 16,777,216 bytes" in edge
    assert o.store.get("huge1") is None  # nothing of it was stored
    serves_as_before(system, o, pids)


# ---------------------------------------------------------------- never user code


def onboard_message(**change: Any) -> dict[str, Any]:
    message = {
        "assignment_id": "probe",
        "user": USER,
        "iteration": 0,
        "client_id": 1,
        "method": "custom",
        "signals": ["speed"],
        "samples": 77,
        "frequency": 1,
        "deadline": time.time() + 600,
    }
    return {k: v for k, v in {**message, **change}.items() if v is not ...}


MALFORMED_ONBOARD: list[tuple[str, tuple[Any, ...]]] = [
    ("extra_field", (onboard_message(extra=1),)),
    ("iteration_text", (onboard_message(iteration="zero"),)),
    ("client_zero", (onboard_message(client_id=0),)),
    ("user_forged", (onboard_message(user="prober\nWARNING forged"),)),
    ("no_deadline", (onboard_message(deadline=...),)),
    ("no_signals", (onboard_message(signals=[]),)),
    ("method_number", (onboard_message(method=5),)),
    ("samples_huge", (onboard_message(samples=10**9),)),
    ("two_arguments", (onboard_message(), onboard_message())),
    ("not_a_mapping", ([onboard_message()],)),
]


def test_malformed_on_board_tasks_fail_without_reaching_user_code(
    system: LocalSystem, o: Oodida, app: Celery, pids: dict[str, object]
) -> None:
    control = app.send_task(TASK_ONBOARD, args=(onboard_message(),), queue="client.1", task_id="control")
    answer = control.get(timeout=60)
    assert answer["status"] == "failed" and MARKER in answer["error"]  # user code shows when it runs
    assert answer["version"].startswith("sha256:")
    for name, args in MALFORMED_ONBOARD:
        result = app.send_task(TASK_ONBOARD, args=args, queue="client.1", task_id=f"malformed-{name}")
        answer = result.get(timeout=60)
        assert answer["status"] == "failed" and answer["version"] == "builtin", name
        assert "malformed OnboardTask" in answer["error"] or "one message argument" in answer["error"]
        line = log_line(system, "fleet", f"task malformed-{name}")
        assert "rejected an on-board message" in line
        if name != "not_a_mapping":
            assert "assignment probe" in line
    for case in GARBAGE[:6]:
        task_id = _publish_garbage(system, "client.1", TASK_ONBOARD, case)
        log_line(system, "fleet", task_id, "rejected a message")
    serves_as_before(system, o, pids)
    assert (system.log_dir / "fleet.log").read_text().count(MARKER) == 1  # the control's line only


# ---------------------------------------------------------------- observability


def cli(system: LocalSystem, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OODIDA_REDIS_URL": system.url,
        "OODIDA_USER": USER,
        "OODIDA_TOKEN": system.token(USER),
    }
    return subprocess.run(
        [sys.executable, "-m", "oodida_user._cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_rejected_spec_and_a_stopped_custom_call_are_logged_with_assignment_user_and_client(
    system: LocalSystem, o: Oodida, app: Celery
) -> None:
    bad = {**LISTING_1_1, "frequency": 1000}
    request = SubmitRequest(assignment_id="obs1", user=USER, token=system.token(USER), spec=bad).to_wire()
    app.send_task(TASK_START, args=(request,), queue="cloud", ignore_result=True)
    line = log_line(system, "cloud-1", "assignment obs1 of prober rejected")
    assert "WARNING" in line and "frequency: must be an integer from 1 to 100" in line

    a = o.submit({**QUICK, "onboard": "custom", "samples": 79, "clients": [2]})
    result = a.wait(timeout=120, progress=False)
    assert "used more than" in result.iterations[0].failed[2]
    line = log_line(system, "fleet", f"assignment {a.id} iteration 0 client 2 (user prober)")
    assert "CustomCodeFailure (memory)" in line and "was stopped" in line


def test_a_spec_nested_900_deep_is_rejected_as_a_spec(system: LocalSystem, o: Oodida, app: Celery) -> None:
    nested: Any = []
    for _ in range(900):
        nested = [nested]
    request = {
        "assignment_id": "deep1",
        "user": USER,
        "token": system.token(USER),
        "spec": {**LISTING_1_1, "name": nested},
    }
    app.send_task(TASK_START, args=(request,), queue="cloud", ignore_result=True)
    line = log_line(system, "cloud-1", "assignment deep1 of prober rejected")
    assert "name: must be a string" in line and len(line) < 1000
    record = o.store.get("deep1")
    assert record is not None and record.status == "failed" and record.error_issues[0]["field"] == "name"


def test_status_shows_per_iteration_counts_of_kept_discarded_missing_and_failed(
    system: LocalSystem, o: Oodida
) -> None:
    a = o.submit({**QUICK, "onboard": "custom", "samples": 79, "iterations": 2})
    b = o.submit({**QUICK, "iterations": 2})
    a.wait(timeout=120, progress=False)
    b.wait(timeout=120, progress=False)
    assert [(c.index, c.kept, c.discarded, c.missing, c.failed) for c in a.counts()] == [
        (0, 0, 0, 0, 2),
        (1, 0, 0, 0, 2),
    ]
    text = cli(system, "status", a.id).stdout
    assert "in all: kept 0, discarded 0, missing 0, failed 4" in text
    assert "iteration 1: FAILED — kept 0, discarded 0, missing 0, failed 2" in text
    status = json.loads(cli(system, "status", b.id, "--json").stdout)
    assert status["totals"] == {
        "iterations": 2,
        "folded_iterations": 0,
        "kept_iterations": 2,
        "failed_iterations": 0,
        "kept": 4,
        "discarded": 0,
        "missing": 0,
        "late": 0,
        "failed": 0,
    }
    assert [c["kept"] for c in status["counts"]] == [2, 2] and status["counts"][1]["ended_by"] == "complete"


def test_the_log_directory_is_the_one_documented(system: LocalSystem) -> None:
    assert system.log_dir == Path(system.data_dir) / "logs"
    assert {"cloud-1.log", "fleet.log"} <= {p.name for p in system.log_dir.iterdir()}
