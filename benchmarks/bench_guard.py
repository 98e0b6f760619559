"""The guard's cost per message: ``envelope.admit`` on raw Redis items, against what kombu does
with every item anyway (``json.loads`` of the envelope) and against Celery's own decode of the
body. Pure CPU, no broker: it prints a table, it is not a timed test.

    .venv/bin/python benchmarks/bench_guard.py [--repeats 2000]

Rows: the messages a system carries (an analyst's start, a cancel, a chord's on-board header
task, the iteration's callback with 10, 100 and 1,000 answers) and items the guard refuses
(not JSON, a broken envelope, a callback option, an unknown task, 20 MB of junk).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from oodida_core.messaging.envelope import admit
from oodida_core.protocol.wire import TASK_CANCEL, TASK_FINISH_ITERATION, TASK_ONBOARD, TASK_START
from oodida_core.spec.model import LISTING_1_1

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def item(task: str, queue: str, body: Any, **headers: Any) -> bytes:
    task_id = uuid.uuid4().hex
    head = {
        "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
        "root_id": task_id, "parent_id": None, "argsrepr": "(...)", "kwargsrepr": "{}",
        "origin": "gen1@host", "ignore_result": True, "replaced_task_nesting": 0,
        "stamped_headers": None, "stamps": {}, **headers,
    }  # fmt: skip
    return json.dumps(
        {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": head,
            "properties": {
                "correlation_id": task_id,
                "reply_to": str(uuid.uuid4()),
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    ).encode()


def answers(n: int) -> list[dict[str, Any]]:
    return [
        {"assignment_id": "a" * 16, "iteration": 0, "client_id": i, "status": "ok", "value": 61.25,
         "version": "builtin", "started_at": 1.0, "finished_at": 2.0}
        for i in range(1, n + 1)
    ]  # fmt: skip


def cases() -> list[tuple[str, str, bytes]]:
    chord: dict[str, Any] = {
        "task": TASK_FINISH_ITERATION,
        "args": [],
        "kwargs": {"assignment_id": "a" * 16, "iteration": 0},
        "options": {"queue": "cloud", "task_id": uuid.uuid4().hex, "group_id": "g" * 20, "argsrepr": "x"},
        "subtask_type": None,
        "immutable": False,
    }
    request = {"assignment_id": "a" * 16, "user": "alice", "token": "t" * 40, "spec": dict(LISTING_1_1)}
    onboard = {"assignment_id": "a" * 16, "user": "alice", "iteration": 0, "client_id": 7,
               "method": "average", "signals": ["speed"], "samples": 1000, "frequency": 1,
               "deadline": 2e9}  # fmt: skip
    kw = {"assignment_id": "a" * 16, "iteration": 0}
    return [
        ("start (analyst)", "cloud", item(TASK_START, "cloud", [[request], {}, EMBED])),
        ("cancel (analyst)", "cloud", item(TASK_CANCEL, "cloud", [[{"assignment_id": "a1"}], {}, EMBED])),
        (
            "on-board header task",
            "client.7",
            item(
                TASK_ONBOARD,
                "client.7",
                [[onboard], {}, {**EMBED, "chord": chord}],
                group="g" * 20,
                group_index=6,
                ignore_result=None,
            ),
        ),
        *[
            (
                f"callback, {n} answers",
                "cloud",
                item(
                    TASK_FINISH_ITERATION,
                    "cloud",
                    [[answers(n)], kw, EMBED],
                    group="g" * 20,
                    ignore_result=None,
                ),
            )
            for n in (10, 100, 1000)
        ],
        ("refused: not JSON", "cloud", b"hello, worker"),
        ("refused: no properties", "cloud", json.dumps({"body": "", "headers": {}}).encode()),
        (
            "refused: callbacks",
            "cloud",
            item(TASK_CANCEL, "cloud", [[{}], {}, {**EMBED, "callbacks": [chord]}]),
        ),
        ("refused: unknown task", "cloud", item("celery.group", "cloud", [[], {}, EMBED])),
        ("refused: 20 MB junk", "cloud", b"x" * (20 * 1024 * 1024)),
    ]


def _decode_body(body: str) -> object:
    return json.loads(base64.b64decode(body))


def per_call(fn: Callable[[], object], repeats: int) -> float:
    """Median of 5 rounds of the mean time per call, in microseconds."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        rounds.append((time.perf_counter() - start) / repeats * 1e6)
    return sorted(rounds)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'message':<24} {'bytes':>10} {'admit µs':>10} {'kombu loads µs':>15} {'body decode µs':>15}")
    for name, queue, raw in cases():
        n = max(3, args.repeats if len(raw) < 100_000 else args.repeats // 100)
        if len(raw) > 1_000_000:
            n = 3
        guard = per_call(partial(admit, raw, queue), n)
        kombu = body = float("nan")
        try:
            envelope = json.loads(raw)
            kombu = per_call(partial(json.loads, raw), n)
            body = per_call(partial(_decode_body, envelope["body"]), n)
        except (ValueError, KeyError, TypeError):
            pass
        print(f"{name:<24} {len(raw):>10,} {guard:>10.1f} {kombu:>15.1f} {body:>15.1f}")


if __name__ == "__main__":
    main()
