"""A huge ``finish_iteration`` pushed onto ``cloud`` (analysts and vehicles may push there) costs
the cloud nothing: the iteration's chord callback is immutable and carries no answers, so its
limit is small (64 KiB), and the guard applies the limit of the task an item names before it
parses the item. A 40 MB item is refused with one line, the cloud's memory does not grow, and
another user's submit is accepted at once. Real Redis (6.2, ACLs on), real workers."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from envelope_kit import QUICK, count_lines, envelope, wait_for

from oodida_core.protocol.keys import CLOUD_QUEUE
from oodida_core.protocol.wire import TASK_FINISH_ITERATION
from oodida_ops.local import LocalSystem
from oodida_user import Oodida


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(3, data_dir=tmp_path_factory.mktemp("huge-finish"), acl=True) as system:
        yield system


def _memory_kb(pid: int) -> dict[str, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", text, re.M)}


def _huge_item() -> bytes:
    answers = "[" + ",".join(["{}"] * 15_000_000) + "]"  # 30 MB of tiny answers, 40 MB as base64
    body = f'[[{answers}], {{"assignment_id": "zz", "iteration": 0}}, {{}}]'.encode()
    message = envelope(TASK_FINISH_ITERATION, CLOUD_QUEUE, raw_body=body)
    assert len(base64.b64decode(message["body"])) == len(body)
    return json.dumps(message).encode()


def test_a_huge_finish_iteration_is_refused_unread_and_costs_the_cloud_no_memory(system: LocalSystem) -> None:
    cloud = system.procs["cloud-1"].pid
    with Oodida(settings=system.client_settings("bob")) as o:  # warm: the cloud at its working size
        assert o.submit(QUICK).wait(timeout=60, progress=False).status == "done"
    before = _memory_kb(cloud)
    item = _huge_item()
    analyst = redis.Redis.from_url(system.role_urls["analyst"])
    for _ in range(3):
        analyst.lpush(CLOUD_QUEUE, item)
    del item
    started = time.monotonic()
    with Oodida(settings=system.client_settings("alice")) as o:
        assignment = o.submit(QUICK)
        accepted = time.monotonic() - started
        result = assignment.wait(timeout=60, progress=False)
    assert accepted < 5, f"another user's submit took {accepted:.1f}s"
    assert result.status == "done" and sorted(result.iterations[0].onboard) == [1, 2, 3]
    wait_for(lambda: count_lines(system, "cloud-1", "rejected a message", TASK_FINISH_ITERATION) >= 3, 30)
    assert count_lines(system, "cloud-1", "rejected a message", TASK_FINISH_ITERATION) == 3
    assert count_lines(system, "cloud-1", "limited to 65,536 bytes") == 3
    after = _memory_kb(cloud)
    grown = {k: (after[k] - before[k]) // 1024 for k in after}
    print(f"cloud worker memory grew by {grown} MB")
    assert grown["VmRSS"] < 40, grown
    assert grown["VmHWM"] < 250, grown  # the item is read off the socket (redis-py buffers it) and freed


def test_a_finish_iteration_with_answers_over_64_kib_is_refused(system: LocalSystem) -> None:
    answers = [{"client_id": 1, "value": "x" * 1000}] * 80
    body = json.dumps([[answers], {"assignment_id": "zz", "iteration": 0}, {}]).encode()
    analyst = redis.Redis.from_url(system.role_urls["analyst"])
    analyst.lpush(CLOUD_QUEUE, json.dumps(envelope(TASK_FINISH_ITERATION, CLOUD_QUEUE, raw_body=body)))
    wait_for(
        lambda: count_lines(system, "cloud-1", "rejected a message", "messages are limited to 65,536") >= 4,
        30,
    )
