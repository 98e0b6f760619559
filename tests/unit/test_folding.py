"""Bounded streams and honest outcomes, as pure functions: folding old iterations into a
summary, an iteration's status, and the on-board answer's label in Flower."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu.utils.json import dumps

from oodida_cloud.folding import MAX_KEYS, fold, kept_iterations, to_fold
from oodida_cloud.iteration import failure_summary, iteration_status
from oodida_core.protocol.wire import FoldedIterations, IterationResult
from oodida_edge.tasks import Answer


def it(index: int, value: Any = 1.0, **kw: Any) -> IterationResult:
    fields: dict[str, Any] = {"onboard": {1: value}, "versions": {1: "builtin"}}
    fields.update(kw)
    return IterationResult(
        index=index, value=value, started_at=10.0 + index, finished_at=11.0 + index, **fields
    )


def test_an_assignment_keeps_its_own_keep_but_never_more_than_the_operators_cap() -> None:
    assert kept_iterations(None, 1000) == 1000
    assert kept_iterations(5, 1000) == 5
    assert kept_iterations(5000, 1000) == 1000


def test_only_iterations_older_than_the_latest_keep_are_folded_and_each_once() -> None:
    assert to_fold(stored_through=2, folded_through=-1, keep=3) == []
    assert to_fold(stored_through=3, folded_through=-1, keep=3) == [0]
    assert to_fold(stored_through=9, folded_through=0, keep=3) == [1, 2, 3, 4, 5, 6]
    assert to_fold(stored_through=9, folded_through=6, keep=3) == []


def test_folding_counts_iterations_clients_and_summarises_numeric_values() -> None:
    summary = None
    for i, value in enumerate([3.0, 1.0, 8.0]):
        summary = fold(summary, it(i, value, missing=(2,), failed={3: "boom"}))
    assert summary is not None
    assert (summary.count, summary.first, summary.last) == (3, 0, 2)
    assert (summary.kept, summary.missing, summary.failed) == (3, 3, 3)
    assert (summary.started_at, summary.finished_at) == (10.0, 13.0)
    numbers = summary.values[""]
    assert (numbers.n, numbers.min, numbers.max, numbers.mean) == (3, 1.0, 8.0, 4.0)
    assert summary.versions == {"builtin": 3}


def test_dict_values_are_summarised_per_key_and_other_values_only_counted() -> None:
    summary = fold(None, it(0, {"speed": 50.0, "rpm": 2000}))
    summary = fold(summary, it(1, {"speed": 70.0, "rpm": 1000}))
    summary = fold(summary, it(2, [1, 2, 3]))
    summary = fold(summary, it(3, {"speed": "fast"}))
    assert summary.values["speed"].min == 50.0 and summary.values["rpm"].max == 2000
    assert summary.values["speed"].n == 2
    assert summary.other_values == 2


def test_collected_per_signal_values_are_summarised_per_signal_over_clients() -> None:
    summary = fold(None, it(0, {"1": {"speed": 50.0}, "2": {"speed": 70.0}}))
    assert set(summary.values) == {"speed"} and summary.values["speed"].n == 2
    assert summary.values["speed"].mean == 60.0


def test_failed_iterations_are_counted_and_their_values_not_summarised() -> None:
    failed = it(0, None, onboard={}, versions={}, failed={1: "ZeroDivisionError"}, status="failed")
    summary = fold(fold(None, failed), it(1, 2.0))
    assert summary.failed_iterations == 1 and summary.values[""].n == 1 and summary.other_values == 0


def test_folding_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError, match="in order"):
        fold(fold(None, it(0)), it(2))


def test_the_summary_tracks_a_bounded_number_of_keys() -> None:
    wide = {f"k{i}": float(i) for i in range(MAX_KEYS + 10)}
    summary = fold(None, it(0, wide))
    assert summary.values == {} and summary.other_values == 1
    assert len(summary.model_dump_json()) < 10_000


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=40))
def test_a_folded_mean_is_the_mean_of_the_folded_values(values: list[float]) -> None:
    summary: FoldedIterations | None = None
    for i, v in enumerate(values):
        summary = fold(summary, it(i, v))
    assert summary is not None
    assert summary.values[""].min == min(values) and summary.values[""].max == max(values)
    mean = summary.values[""].mean
    assert mean is not None and math.isclose(mean, sum(values) / len(values), rel_tol=1e-9, abs_tol=1e-6)
    again = FoldedIterations.model_validate_json(summary.to_json())  # survives storage
    assert again == summary


def test_an_iteration_fails_when_no_value_could_be_made_because_code_failed() -> None:
    assert iteration_status(anything_kept=False, failures=6, offboard_error=None) == "failed"
    assert iteration_status(anything_kept=True, failures=5, offboard_error=None) == "ok"
    assert iteration_status(anything_kept=True, failures=0, offboard_error="boom") == "failed"
    assert iteration_status(anything_kept=False, failures=0, offboard_error=None) == "ok"  # all missing


def test_a_failure_summary_names_the_first_client_and_how_many_more() -> None:
    result = it(4, None, onboard={}, failed={2: "ValueError: x", 5: "ValueError: y"}, status="failed")
    assert failure_summary(result) == "iteration 4: client 2 failed: ValueError: x (and 1 more client(s))"
    offboard = it(1, None, error="TypeError: nope", status="failed")
    assert "off-board step failed: TypeError: nope" in failure_summary(offboard)
    assert len(failure_summary(it(0, None, failed={1: "x" * 1000}, status="failed"), limit=80)) == 80


def test_a_failed_answer_is_labelled_failed_where_flower_shows_it_and_stored_as_its_dict() -> None:
    data = {"status": "failed", "error": "ZeroDivisionError: division\nby zero", "version": "sha256:ab"}
    answer = Answer(data)
    assert repr(answer).startswith("FAILED (sha256:ab): ZeroDivisionError: division by zero")
    assert json.loads(dumps(answer)) == data  # what the result backend stores and the chord counts
    assert repr(Answer({"status": "ok", "value": 3.5, "version": "builtin"})) == "ok (builtin): 3.5"


def test_a_failed_answers_label_shows_terminal_escapes_as_escapes() -> None:
    label = repr(Answer({"status": "failed", "error": "boom \x1b[2J\x9b31m end", "version": "v"}))
    assert "\x1b" not in label and "\x9b" not in label
    assert label.startswith("FAILED (v): boom ") and label.endswith(" end")
