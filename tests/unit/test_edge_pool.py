"""The edge pool's parts: which tasks leave the fast path, and how the custom lanes share out."""

from __future__ import annotations

import json
import os
import threading
import time

from oodida_core.protocol.wire import TASK_INSTALL, TASK_ONBOARD
from oodida_edge.pool import CustomLanes, custom_assignment


def pool_args(message: object, task: str = TASK_ONBOARD, as_text: bool = False) -> tuple[object, ...]:
    body = json.dumps([[message], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    return (task, "task-id", {}, body if as_text else body.encode(), "application/json", "utf-8")


def test_a_custom_onboard_task_leaves_the_fast_path_keyed_by_its_assignment() -> None:
    assert custom_assignment(pool_args({"method": "custom", "assignment_id": "a1"})) == "a1"
    assert custom_assignment(pool_args({"method": "custom", "assignment_id": "a1"}, as_text=True)) == "a1"


def test_a_custom_method_spelled_with_json_escapes_is_still_seen() -> None:
    body = b'[[{"method": "\\u0063ustom", "assignment_id": "a2"}], {}, {}]'
    assert custom_assignment((TASK_ONBOARD, "id", {}, body, "application/json", "utf-8")) == "a2"


def test_builtin_tasks_installs_and_unreadable_bodies_stay_on_the_fast_path() -> None:
    assert custom_assignment(pool_args({"method": "average", "assignment_id": "a1"})) is None
    assert custom_assignment(pool_args({"method": "average", "model": {"note": "custom"}})) is None
    assert custom_assignment(pool_args({"method": "custom"}, task=TASK_INSTALL)) is None
    assert custom_assignment((TASK_ONBOARD, "id", {}, b"custom not json", "application/json", "")) is None
    assert custom_assignment((TASK_ONBOARD, "id", {}, b'{"custom": 1}', "application/json", "")) is None
    assert custom_assignment(None) is None and custom_assignment(()) is None


def test_a_custom_task_without_an_assignment_id_still_leaves_the_fast_path() -> None:
    assert custom_assignment(pool_args({"method": "custom", "assignment_id": 7})) == ""


def test_one_assignment_holds_at_most_its_share_of_the_lanes() -> None:
    lanes = CustomLanes(threads=2, per_assignment=1)
    release = threading.Event()
    done: list[str] = []
    try:
        lanes.submit("runaway", release.wait)
        lanes.submit("runaway", release.wait)
        time.sleep(0.1)
        assert lanes.running() == 1 and lanes.waiting() == 1
        lanes.submit("other", lambda: done.append("other"))
        deadline = time.monotonic() + 5
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done == ["other"]  # ran while the runaway held its one lane
    finally:
        release.set()
        lanes.close()


def test_waiting_tasks_are_taken_in_turn_over_assignments_each_in_arrival_order() -> None:
    lanes = CustomLanes(threads=1, per_assignment=1)
    gate = threading.Event()
    order: list[str] = []
    try:
        lanes.submit("gate", gate.wait)
        time.sleep(0.05)
        for job in ("a1", "a2", "a3"):
            lanes.submit("a", lambda job=job: order.append(job))
        for job in ("b1", "b2"):
            lanes.submit("b", lambda job=job: order.append(job))
        gate.set()
        deadline = time.monotonic() + 5
        while len(order) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert order == ["a1", "b1", "a2", "b2", "a3"]
    finally:
        lanes.close()


def test_a_job_that_raises_costs_that_job_only() -> None:
    lanes = CustomLanes(threads=1, per_assignment=1)
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    try:
        lanes.submit("a", boom)
        lanes.submit("a", done.set)
        assert done.wait(5)
    finally:
        lanes.close()


def test_lane_threads_run_at_a_lower_cpu_priority_than_the_consumer() -> None:
    lanes = CustomLanes(threads=1, per_assignment=1, nice=5)
    seen: list[int] = []
    try:
        lanes.submit("a", lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [os.getpriority(os.PRIO_PROCESS, 0) + 5] or seen == [19]
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < seen[0]
    finally:
        lanes.close()
