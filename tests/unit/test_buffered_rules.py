"""Asynchronous aggregation (the spec's ``buffer``): the key, its checks at start, and the pure
decisions of ``oodida_cloud.buffered`` (what to aggregate, staleness, who gets the new model)."""

from __future__ import annotations

import json

import pytest

from oodida_cloud.buffered import VERSIONS, pick, read_versions, resend, staleness
from oodida_cloud.planning import check_min_clients, onboard_tasks
from oodida_core.protocol.errors import SpecError
from oodida_core.protocol.wire import IterationResult
from oodida_core.spec.model import AssignmentSpec, spec_to_wire, validate_spec

FEDERATED = {
    "name": "fb",
    "mode": "federated",
    "clients": "all",
    "signals": ["speed", "rpm", "fuel_rate"],
    "onboard": "train",
    "offboard": "fedavg",
    "frequency": 1,
    "samples": 10,
    "iterations": 3,
}


def spec(**kw: object) -> AssignmentSpec:
    s = validate_spec({**FEDERATED, **kw})
    assert isinstance(s, AssignmentSpec)
    return s


def test_buffer_is_an_optional_positive_integer_that_round_trips() -> None:
    assert spec().buffer is None
    s = spec(buffer=2)
    assert s.buffer == 2 and validate_spec(spec_to_wire(s)) == s
    with pytest.raises(SpecError, match="buffer: must be an integer from 1"):
        spec(buffer=0)


def test_a_buffer_runs_only_in_federated_mode_within_the_selected_clients_and_without_a_quorum() -> None:
    check_min_clients(spec(buffer=3), [1, 2, 3])
    with pytest.raises(SpecError) as info:
        check_min_clients(spec(buffer=4, min_clients=2), [1, 2, 3])
    rules = {(i.field, i.rule) for i in info.value.issues}
    assert ("min_clients", "not with buffer: an asynchronous aggregation takes every buffer answers") in rules
    assert ("buffer", "must be at most the number of selected clients (3: 1-3)") in rules
    measuring = validate_spec(
        {**FEDERATED, "mode": "measurement", "onboard": "average", "offboard": "collect", "buffer": 1}
    )
    assert isinstance(measuring, AssignmentSpec)
    with pytest.raises(SpecError, match="buffer: only allowed in federated mode"):
        check_min_clients(measuring, [1])


def test_a_buffered_task_says_so_and_a_synchronous_one_does_not() -> None:
    assert [t.buffered for t in onboard_tasks(spec(buffer=1), "a", "u", 0, [1, 2], None, 1e12)] == [
        True,
        True,
    ]
    assert [t.buffered for t in onboard_tasks(spec(), "a", "u", 0, [1], None, 1e12)] == [False]


def test_nothing_is_aggregated_until_the_buffer_is_full_then_every_waiting_answer_is() -> None:
    assert pick([3], buffer=2, closing=False) is None
    assert pick([3, 1], buffer=2, closing=False) == [1, 3]
    assert pick([4, 1, 3], buffer=2, closing=False) == [1, 3, 4]


def test_a_deadline_or_cancel_aggregates_whatever_waits_even_nothing() -> None:
    assert pick([2], buffer=3, closing=True) == [2]
    assert pick([], buffer=3, closing=True) == []


def test_staleness_is_how_many_versions_behind_each_taken_model_was() -> None:
    versions = {1: 5, 2: 5, 3: 1}
    assert staleness(versions, [1, 3], current=5) == {1: 0, 3: 4}


def test_the_new_model_goes_to_the_taken_clients_and_at_a_deadline_to_the_timed_out_ones() -> None:
    sent = {1: (4, 100.0), 2: (4, 100.0), 3: (1, 10.0)}  # client 3's task ran out at 10 + 60
    assert resend(sent, [1, 2], timeout=60, now=101.0, closing=False) == [1, 2]
    assert resend(sent, [1], timeout=60, now=101.0, closing=True) == [1, 3]


def test_the_versions_are_read_from_the_records_json() -> None:
    raw = {VERSIONS: json.dumps({"1": [3, 12.5], "7": [0, 1.0]})}
    assert read_versions(raw) == {1: (3, 12.5), 7: (0, 1.0)}
    assert read_versions({}) == {}


def test_a_stored_result_without_staleness_reads_as_none() -> None:
    old = {"index": 0, "started_at": 0.0, "finished_at": 1.0}
    assert IterationResult.model_validate(old).staleness == {}
