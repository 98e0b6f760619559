"""The built-in off-board methods, checked against numpy on the same numbers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oodida_cloud.aggregate import OFFBOARD_BUILTINS, AggregationError, aggregate
from oodida_core.protocol.errors import OodidaError

NUMPY_OPS: dict[str, Callable[..., Any]] = {
    "average": np.mean,
    "min": np.min,
    "max": np.max,
    "median": np.median,
    "sum": np.sum,
}
SCALAR = {
    3: {"speed": 80.5, "rpm": 2100.0},
    1: {"speed": 61.25, "rpm": 3050.0},
    7: {"speed": 99.0, "rpm": 1800.5},
    4: {"speed": 12.0, "rpm": 4000.0},
}
LISTS = {
    2: {"speed": [1.0, 5.0, 9.0]},
    1: {"speed": [2.0, -3.0, 4.5]},
    5: {"speed": [0.5, 7.0, 4.0]},
}


def as_json(value: object) -> str:
    return json.dumps(value, allow_nan=False)


def model(weights: list[float], n: int, loss: float = 1.0) -> dict[str, Any]:
    return {
        "features": ["speed", "rpm"],
        "target": "fuel_rate",
        "weights": weights,
        "n_samples": n,
        "loss": loss,
    }


def test_the_builtin_offboard_methods_are_listed() -> None:
    assert (
        *("collect", "average", "min", "max", "median", "sum", "quantile", "fedavg"),
        *("fedavgm", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum"),
    ) == OFFBOARD_BUILTINS


def test_aggregation_error_is_an_oodida_error() -> None:
    assert issubclass(AggregationError, OodidaError)


# ------------------------------------------------------------------------------- collect


def test_collect_returns_every_value_ordered_by_client_id() -> None:
    result = aggregate("collect", "average", SCALAR)
    assert isinstance(result, dict)
    assert list(result) == [1, 3, 4, 7]
    assert result == SCALAR


def test_collect_keeps_threshold_events_as_they_are() -> None:
    events = {2: {"speed": [{"index": 4, "value": 130.0}]}, 1: {"speed": []}}
    assert aggregate("collect", "threshold", events) == {1: {"speed": []}, 2: events[2]}


def test_collect_of_no_values_is_an_empty_dict() -> None:
    assert aggregate("collect", "average", {}) == {}


# ---------------------------------------------------------------- average, min, max, median, sum


@pytest.mark.parametrize("op", sorted(NUMPY_OPS))
def test_scalar_signals_match_numpy_over_clients(op: str) -> None:
    result = aggregate(op, "average", SCALAR)
    assert isinstance(result, dict)
    for signal in ("speed", "rpm"):
        expected = NUMPY_OPS[op](np.array([SCALAR[c][signal] for c in sorted(SCALAR)]))
        assert result[signal] == pytest.approx(float(expected))
        assert type(result[signal]) is float


@pytest.mark.parametrize("op", sorted(NUMPY_OPS))
def test_lists_are_combined_element_wise_like_numpy(op: str) -> None:
    result = aggregate(op, "collect", LISTS)
    expected = NUMPY_OPS[op](np.array([LISTS[c]["speed"] for c in sorted(LISTS)]), axis=0)
    assert isinstance(result, dict)
    assert result["speed"] == pytest.approx(expected.tolist())
    assert all(type(x) is float for x in result["speed"])


def test_mean_is_an_alias_of_average() -> None:
    assert aggregate("mean", "average", SCALAR) == aggregate("average", "average", SCALAR)


def test_a_sum_of_counts_stays_an_integer() -> None:
    result = aggregate("sum", "count", {1: {"speed": 10}, 2: {"speed": 32}})
    assert result == {"speed": 42}
    assert type(result["speed"]) is int


def test_min_and_max_of_integers_stay_integers_and_average_becomes_float() -> None:
    counts = {1: {"speed": 10}, 2: {"speed": 31}}
    assert aggregate("max", "count", counts) == {"speed": 31}
    assert aggregate("min", "count", counts) == {"speed": 10}
    assert aggregate("average", "count", counts) == {"speed": 20.5}


def test_a_single_client_is_its_own_aggregate() -> None:
    assert aggregate("median", "average", {9: {"speed": 3.5}}) == {"speed": 3.5}


@pytest.mark.parametrize("op", [*sorted(NUMPY_OPS), "collect"])
def test_the_result_does_not_depend_on_insertion_order(op: str) -> None:
    forward = dict(sorted(SCALAR.items()))
    backward = dict(sorted(SCALAR.items(), reverse=True))
    assert as_json(aggregate(op, "average", forward)) == as_json(aggregate(op, "average", backward))


@pytest.mark.parametrize("op", [m for m in OFFBOARD_BUILTINS if m != "collect"])
def test_no_values_give_none(op: str) -> None:
    assert aggregate(op, "average", {}) is None


def test_numpy_inputs_give_plain_python_outputs() -> None:
    values = {1: {"s": np.float64(1.5)}, 2: {"s": np.int64(2)}}
    result = aggregate("sum", "custom", values)
    assert result == {"s": 3.5}
    assert type(result["s"]) is float


# ---------------------------------------------------------------------------- histograms


def test_histograms_are_summed_bin_by_bin_keeping_the_edges() -> None:
    edges = [0.0, 50.0, 100.0, 150.0]
    values = {
        2: {"speed": {"edges": edges, "counts": [1, 2, 3]}},
        1: {"speed": {"edges": edges, "counts": [10, 0, 5]}},
    }
    result = aggregate("sum", "histogram", values)
    assert result == {"speed": {"edges": edges, "counts": [11, 2, 8]}}
    assert all(type(c) is int for c in result["speed"]["counts"])


@pytest.mark.parametrize("op", ["average", "min", "max", "median"])
def test_histograms_can_only_be_summed(op: str) -> None:
    values = {1: {"speed": {"edges": [0.0, 1.0], "counts": [3]}}}
    with pytest.raises(AggregationError, match="histograms have no"):
        aggregate(op, "histogram", values)


def test_histograms_with_other_edges_are_refused() -> None:
    values = {
        1: {"speed": {"edges": [0.0, 1.0, 2.0], "counts": [1, 1]}},
        2: {"speed": {"edges": [0.0, 1.0, 3.0], "counts": [1, 1]}},
    }
    with pytest.raises(AggregationError, match=r"edges differ: client 2"):
        aggregate("sum", "histogram", values)


# ---------------------------------------------------------------------------- shape errors


def test_lists_of_other_lengths_name_the_clients_that_differ() -> None:
    values = {1: {"s": [1.0, 2.0]}, 2: {"s": [1.0]}, 3: {"s": [3.0, 4.0]}, 4: {"s": [1, 2, 3]}}
    with pytest.raises(AggregationError) as err:
        aggregate("average", "sample", values)
    message = str(err.value)
    assert "'s'" in message
    assert "client 2 sent 1" in message
    assert "client 4 sent 3" in message
    assert "client 1" not in message and "client 3" not in message


def test_threshold_events_cannot_be_averaged() -> None:
    values = {1: {"speed": [{"index": 1, "value": 3.0}]}}
    with pytest.raises(AggregationError, match="collect"):
        aggregate("average", "threshold", values)


def test_trained_models_need_fedavg_not_average() -> None:
    with pytest.raises(AggregationError, match="fedavg"):
        aggregate("average", "train", {1: model([1.0], 1)})


def test_clients_with_other_signals_are_refused() -> None:
    values = {1: {"speed": 1.0, "rpm": 2.0}, 2: {"speed": 1.0}, 3: {"speed": 2.0, "rpm": 1.0}}
    with pytest.raises(AggregationError, match=r"same signals.*client 2 lacks 'rpm'"):
        aggregate("sum", "average", values)


def test_unknown_offboard_method_is_refused() -> None:
    with pytest.raises(AggregationError, match="unknown off-board method 'mode'"):
        aggregate("mode", "average", SCALAR)


def test_custom_offboard_is_not_a_builtin() -> None:
    with pytest.raises(AggregationError, match="deployed"):
        aggregate("custom", "average", SCALAR)


def test_overflow_to_infinity_is_refused() -> None:
    values = {1: {"s": 1e308}, 2: {"s": 1e308}}
    with pytest.raises(AggregationError, match="not finite"):
        aggregate("sum", "average", values)


def test_non_finite_input_is_refused_and_named() -> None:
    values = {1: {"s": float("nan")}, 2: {"s": 1.0}}
    with pytest.raises(AggregationError, match="client 1 sent non-finite"):
        aggregate("average", "average", values)


def test_an_integer_too_large_for_a_float_is_refused() -> None:
    with pytest.raises(AggregationError, match="too large"):
        aggregate("average", "custom", {1: 10**400, 2: 1})


# ----------------------------------------------------------------------------- custom values


def test_custom_numbers_lists_and_dicts_are_combined_recursively() -> None:
    values = {
        1: {"a": 1.0, "b": [1.0, 2.0], "c": {"d": [[1, 2], [3, 4]]}},
        2: {"a": 3.0, "b": [3.0, 6.0], "c": {"d": [[5, 6], [7, 8]]}},
    }
    assert aggregate("average", "custom", values) == {
        "a": 2.0,
        "b": [2.0, 4.0],
        "c": {"d": [[3.0, 4.0], [5.0, 6.0]]},
    }
    assert aggregate("sum", "custom", values)["c"] == {"d": [[6, 8], [10, 12]]}  # type: ignore[index]


def test_custom_bare_numbers_and_lists_are_combined() -> None:
    assert aggregate("max", "custom", {1: 3, 2: 7.5}) == 7.5
    assert aggregate("median", "custom", {1: [1, 9], 2: [2, 8], 3: [3, 7]}) == [2.0, 8.0]


def test_custom_values_of_different_shapes_explain_the_mismatch() -> None:
    values = {1: {"a": [1.0, {"b": 2}]}, 2: {"a": [1.0, [3.0]]}}
    with pytest.raises(AggregationError) as err:
        aggregate("sum", "custom", values)
    assert "a[1]" in str(err.value)
    assert "dict with keys 'b' from client 1" in str(err.value)
    assert "list of 1 from client 2" in str(err.value)


def test_custom_dicts_with_other_keys_are_refused() -> None:
    with pytest.raises(AggregationError, match="same keys"):
        aggregate("sum", "custom", {1: {"a": 1}, 2: {"b": 1}})


@pytest.mark.parametrize("value", ["text", True, None])
def test_custom_values_that_are_not_numbers_are_refused(value: object) -> None:
    with pytest.raises(AggregationError, match="collect"):
        aggregate("sum", "custom", {1: value, 2: value})


# ---------------------------------------------------------------------------------- fedavg


def test_fedavg_weights_each_client_by_its_samples() -> None:
    values = {2: model([4.0, 8.0], 30, loss=2.0), 1: model([0.0, 0.0], 10, loss=1.0)}
    result = aggregate("fedavg", "train", values)
    expected = np.average([[0.0, 0.0], [4.0, 8.0]], axis=0, weights=[10, 30])
    assert result == {
        "features": ["speed", "rpm"],
        "target": "fuel_rate",
        "weights": pytest.approx(expected.tolist()),
        "n_samples": 40,
        "loss": pytest.approx(1.75),
        "clients": 2,
    }
    # a client with 3x the samples pulls the average 3x as hard: 3/4 of the way towards it
    assert result["weights"] == pytest.approx([3.0, 6.0])
    as_json(result)


def test_fedavg_ignores_clients_without_samples() -> None:
    values = {1: model([1.0, 1.0], 5), 2: model([100.0], 0), 3: model([3.0, 3.0], 5)}
    result = aggregate("fedavg", "train", values)
    assert result["weights"] == [2.0, 2.0]  # type: ignore[index]
    assert result["clients"] == 2  # type: ignore[index]


def test_fedavg_with_no_samples_anywhere_is_refused() -> None:
    with pytest.raises(AggregationError, match="n_samples 0"):
        aggregate("fedavg", "train", {1: model([1.0], 0), 2: model([2.0], 0)})


def test_fedavg_with_other_weight_lengths_names_the_clients() -> None:
    values = {1: model([1.0, 2.0], 1), 2: model([1.0], 1), 3: model([1.0, 2.0], 1)}
    with pytest.raises(AggregationError, match=r"number of weights.*client 2 has 1"):
        aggregate("fedavg", "train", values)


def test_fedavg_with_other_features_or_target_names_the_clients() -> None:
    other_features = {**model([1.0], 1), "features": ["rpm"]}
    with pytest.raises(AggregationError, match=r"features.*client 2"):
        aggregate("fedavg", "train", {1: model([1.0], 1), 2: other_features, 3: model([2.0], 1)})
    other_target = {**model([1.0], 1), "target": "speed"}
    with pytest.raises(AggregationError, match=r"target.*client 1"):
        aggregate("fedavg", "train", {1: other_target, 2: model([1.0], 1), 3: model([2.0], 1)})


def test_fedavg_of_custom_models_copies_other_keys_from_the_lowest_client() -> None:
    values = {
        5: {"weights": [3.0], "n_samples": 1, "note": "five"},
        2: {"weights": [1.0], "n_samples": 1, "note": "two"},
    }
    assert aggregate("fedavg", "custom", values) == {
        "weights": [2.0],
        "n_samples": 2,
        "note": "two",
        "clients": 2,
    }


@pytest.mark.parametrize(
    "value",
    [
        {"speed": 1.0},
        [1.0, 2.0],
        {"weights": [1.0], "n_samples": -1},
        {"weights": [1.0], "n_samples": 1.5},
        {"weights": [1.0], "n_samples": True},
        {"weights": "1.0", "n_samples": 1},
        {"weights": ["1.0"], "n_samples": 1},
        {"weights": [[1.0], [2.0, 3.0]], "n_samples": 1},
    ],
)
def test_fedavg_refuses_values_that_are_not_models(value: object) -> None:
    with pytest.raises(AggregationError, match="fedavg"):
        aggregate("fedavg", "custom", {1: value})


# ------------------------------------------------------------------------------ properties

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(
    rows=st.integers(min_value=1, max_value=4).flatmap(
        lambda n: st.dictionaries(
            st.integers(min_value=1, max_value=1000),
            st.lists(finite, min_size=n, max_size=n),
            min_size=1,
            max_size=8,
        )
    ),
    op=st.sampled_from(sorted(NUMPY_OPS)),
)
def test_any_equal_length_lists_match_numpy_and_serialise(rows: dict[int, list[float]], op: str) -> None:
    values = {cid: {"s": row} for cid, row in rows.items()}
    result = aggregate(op, "collect", values)
    expected = NUMPY_OPS[op](np.array([rows[c] for c in sorted(rows)]), axis=0)
    assert result["s"] == pytest.approx(expected.tolist(), rel=1e-9, abs=1e-6)  # type: ignore[index]
    reversed_values = dict(reversed(list(values.items())))
    assert as_json(result) == as_json(aggregate(op, "collect", reversed_values))
    assert as_json(aggregate("collect", "collect", values))
