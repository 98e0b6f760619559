"""The cloud is not a confused deputy: an analyst's message carries no Celery workflow option,
routing or result option that the cloud honours.

Under ``--acl``, with only the analyst role's Redis credentials and no valid token, messages on
``cloud`` name callbacks, errbacks, a chain, a chord (with a group id), Celery's built-in
canvas tasks (``celery.group``, ``celery.map``) and ``ignore_result: false`` with a chosen task
id. Before the guard refused them the cloud published ``oodida.edge.install`` with its own
credentials and moved another user's on-board pointer back to a version of the attacker's
choice. Now each message is dropped with one log line, nothing is published (canary queues
nobody consumes stay empty), no pointer moves, and nothing is written for the analyst-read role
to read back (``celery-task-meta-*``, ``celery-taskset-meta-*``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from envelope_kit import NULL_EMBED, count_lines, dumps, envelope, pids, serves

from oodida_core.customcode.check import code_version as version_of
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import TASK_AUTHENTICATE, TASK_CANCEL, TASK_INSTALL, TASK_START
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

VICTIM = "victim"
OLD = "def custom_code(x):\n    return 1.0\n"
NEW = "def custom_code(x):\n    return 2.0\n"
KEYS = Keys()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(2, data_dir=tmp_path_factory.mktemp("deputy"), acl=True) as s:
        yield s


@pytest.fixture(scope="module")
def victim(system: LocalSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oodida]:
    """The victim deployed OLD, then NEW, on both clients."""
    folder: Path = tmp_path_factory.mktemp("victim")
    with Oodida(settings=system.client_settings(VICTIM)) as o:
        for source in (OLD, NEW):
            module = folder / "m.py"
            module.write_text(source)
            assert sorted(o.deploy_onboard(module).wait(timeout=60).accepted) == [1, 2]
        yield o


def install(client_id: int, queue: str) -> dict[str, Any]:
    """A signature of the install that would point the victim's code back to OLD."""
    message = {
        "deploy_id": f"evil-{client_id}-{queue.replace('.', '-')}",
        "user": VICTIM,
        "client_id": client_id,
        "version": version_of(OLD),
        "filename": "m.py",
    }
    return {
        "task": TASK_INSTALL,
        "args": [message],
        "kwargs": {},
        "options": {"queue": queue},
        "subtask_type": None,
        "immutable": True,
    }


def canary(n: int) -> dict[str, Any]:
    return install(1, f"canary.{n}")


REQUEST = {"assignment_id": "nope", "user": VICTIM, "token": "not-a-token"}
ATTACKS: list[tuple[str, str, Any, dict[str, Any]]] = [
    # (case, task, body, header changes)
    (
        "callbacks",
        TASK_CANCEL,
        [[REQUEST], {}, {**NULL_EMBED, "callbacks": [install(1, "client.1"), canary(1)]}],
        {},
    ),
    (
        "errbacks",
        TASK_START,
        [[REQUEST], {}, {**NULL_EMBED, "errbacks": [install(2, "client.2"), canary(2)]}],
        {},
    ),
    (
        "chain",
        TASK_AUTHENTICATE,
        [[REQUEST], {}, {**NULL_EMBED, "chain": [canary(3), install(2, "client.2")]}],
        {},
    ),
    (
        "chord",
        TASK_CANCEL,
        [[REQUEST], {}, {**NULL_EMBED, "chord": {**canary(4), "chord_size": 1}}],
        {"group": "evil-g1", "group_index": 0, "ignore_result": False},
    ),
    ("result_stored", TASK_CANCEL, [[REQUEST], {}, NULL_EMBED], {"ignore_result": False}),
    ("celery_group", "celery.group", [[[install(1, "client.1"), canary(5)], "evil-g2"], {}, NULL_EMBED], {}),
    ("celery_map", "celery.map", [[canary(6), [[{"x": 1}]]], {}, NULL_EMBED], {}),
]


def test_workflow_options_from_the_analyst_role_publish_nothing_and_move_no_pointer(
    system: LocalSystem, victim: Oodida
) -> None:
    before = pids(system)
    admin = redis.Redis.from_url(system.url)
    analyst = redis.Redis.from_url(system.role_urls["analyst"])
    try:
        pointer = {cid: admin.lindex(KEYS.onboard_pointer(VICTIM, cid), 0) for cid in (1, 2)}
        assert set(pointer.values()) == {version_of(NEW).encode()}
        ids = []
        rejected = count_lines(system, "cloud-1", "rejected a message (queue cloud")
        for name, task, body, change in ATTACKS:
            task_id = f"evil-{name.replace('_', '-')}"
            ids.append(task_id)
            analyst.lpush(
                "cloud", dumps(envelope(task, "cloud", body, task_id=task_id, header_change=change))
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if count_lines(system, "cloud-1", "rejected a message (queue cloud") >= rejected + len(ATTACKS):
                break
            time.sleep(0.1)
        time.sleep(2)  # whatever the cloud might have published has reached the clients
        after = {cid: admin.lindex(KEYS.onboard_pointer(VICTIM, cid), 0) for cid in (1, 2)}
        assert after == pointer, "another user's on-board pointer moved"
        assert admin.keys("canary.*") == [], "the cloud published what a workflow option named"
        assert admin.keys("celery-taskset-meta-evil*") == []
        assert [k for k in admin.keys("celery-task-meta-*") if b"evil" in k] == []
        for task_id in ids:
            lines = count_lines(system, "cloud-1", "rejected a message (queue cloud", f"id {task_id}")
            assert lines == 1, task_id
        serves(system, victim, before, [1, 2])
    finally:
        admin.close()
        analyst.close()
