"""Raw Redis items for the task queues: kombu envelopes as Celery publishes them, broken ones,
and a system under ``--acl`` to push them at with each role's credentials (redis-py, no kombu).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

QUICK = {**LISTING_1_1, "samples": 10}
NULL_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def headers(task: str, task_id: str, change: dict[str, Any] | None = None) -> dict[str, Any]:
    """Celery's protocol-2 headers, as ``send_task`` writes them (``change``: ``...`` removes)."""
    base: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "gen1@prober",
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    return {k: v for k, v in {**base, **(change or {})}.items() if v is not ...}


def envelope(
    task: str,
    queue: str,
    body: object = None,
    *,
    task_id: str | None = None,
    raw_body: bytes | None = None,
    header_change: dict[str, Any] | None = None,
    property_change: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A kombu envelope for the Redis transport; ``top`` replaces (``...`` removes) top keys."""
    task_id = task_id or f"env-{uuid.uuid4().hex[:10]}"
    payload = (
        raw_body
        if raw_body is not None
        else json.dumps(body if body is not None else [[{}], {}, NULL_EMBED]).encode()
    )
    properties: dict[str, Any] = {
        "correlation_id": task_id,
        "reply_to": str(uuid.uuid4()),
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
        **(property_change or {}),
    }
    message: dict[str, Any] = {
        "body": base64.b64encode(payload).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers(task, task_id, header_change),
        "properties": {k: v for k, v in properties.items() if v is not ...},
    }
    return {k: v for k, v in {**message, **(top or {})}.items() if v is not ...}


def dumps(message: object) -> bytes:
    return json.dumps(message).encode()


def count_lines(system: LocalSystem, name: str, *needles: str) -> int:
    path = system.log_dir / f"{name}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return sum(1 for line in text.splitlines() if all(n in line for n in needles))


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not hold within {timeout}s")


def pids(system: LocalSystem) -> dict[str, int]:
    return {name: proc.pid for name, proc in system.procs.items()}


def all_alive(system: LocalSystem, before: dict[str, int]) -> bool:
    return pids(system) == before and all(p.poll() is None for p in system.procs.values())


def drained(admin: redis.Redis, *queues: str) -> bool:
    """Every queue empty and no message left unacknowledged (none will come back)."""
    return all(admin.llen(q) == 0 for q in queues) and admin.hlen("unacked") == 0


def serves(system: LocalSystem, o: Oodida, before: dict[str, int], clients: list[int]) -> None:
    """The same processes are alive and a normal assignment completes on every client."""
    result = o.submit(QUICK).wait(timeout=90, progress=False)
    assert result.status == "done" and sorted(result.iterations[0].onboard) == clients
    assert all_alive(system, before), (before, pids(system))
