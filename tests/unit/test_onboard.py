"""Built-in on-board methods: the same numbers as numpy, as plain JSON data, clear errors."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from oodida_core.protocol.signals import SIGNALS
from oodida_edge.onboard import BUILTIN_METHODS, OnboardError, OnboardParams, run_builtin
from oodida_edge.sources.simulated import SimulatedSensors

SIGS = ("speed", "rpm", "fuel_rate")


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return SimulatedSensors().read(9, "onboard", 0, list(SIGNALS), 5000, 1)


def run(method: str, data: dict[str, np.ndarray], **kw: Any) -> Any:
    signals = kw.pop("signals", SIGS)
    return run_builtin(OnboardParams(method=method, signals=tuple(signals), **kw), data, None)


def assert_plain_json(value: object) -> None:
    """Only Python's own JSON types, no numpy scalars, and no NaN/inf."""
    text = json.dumps(value, allow_nan=False)
    assert json.loads(text) == value

    def walk(v: object) -> None:
        if isinstance(v, dict):
            assert all(type(k) is str for k in v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        else:
            assert type(v) in (int, float, str, bool), type(v)

    walk(value)


NUMPY_STATS: dict[str, Callable[[np.ndarray], Any]] = {
    "average": np.mean,
    "mean": np.mean,
    "min": np.min,
    "max": np.max,
    "median": np.median,
    "sum": np.sum,
    "std": lambda x: np.std(x, ddof=0),
    "variance": lambda x: np.var(x, ddof=0),
}


@pytest.mark.parametrize("method", sorted(NUMPY_STATS))
def test_statistics_equal_numpy_on_the_same_readings(data: dict[str, np.ndarray], method: str) -> None:
    out = run(method, data)
    assert list(out) == list(SIGS)
    for s in SIGS:
        assert type(out[s]) is float
        assert out[s] == pytest.approx(float(NUMPY_STATS[method](data[s])), rel=1e-12)


def test_method_names_are_case_insensitive(data: dict[str, np.ndarray]) -> None:
    assert run("Average", data) == run("average", data)


def test_count_is_the_number_of_finite_readings(data: dict[str, np.ndarray]) -> None:
    assert run("count", data) == {s: 5000 for s in SIGS}
    holes = {"speed": np.array([1.0, np.nan, 3.0, np.inf])}
    assert run("count", holes, signals=["speed"]) == {"speed": 2}


def test_collect_returns_every_reading_as_floats(data: dict[str, np.ndarray]) -> None:
    out = run("collect", data)
    for s in SIGS:
        assert out[s] == data[s].tolist()
        assert all(type(v) is float for v in out[s][:10])


def test_sample_draws_without_replacement_in_index_order(data: dict[str, np.ndarray]) -> None:
    ramp = {"speed": np.arange(1000, dtype=float), "rpm": np.arange(1000, dtype=float) * 2}
    out = run("sample", ramp, signals=["speed", "rpm"], sample_size=100, seed=3)
    picked = out["speed"]
    assert len(picked) == 100
    assert len(set(picked)) == 100  # without replacement
    assert picked == sorted(picked)  # index order (the ramp makes values = indices)
    assert out["rpm"] == [2 * v for v in picked]  # the same instants for every signal


def test_sample_is_deterministic_for_a_seed_and_varies_with_it(
    data: dict[str, np.ndarray],
) -> None:
    a = run("sample", data, sample_size=50, seed=1)
    assert a == run("sample", data, sample_size=50, seed=1)
    assert a != run("sample", data, sample_size=50, seed=2)
    rng = np.random.default_rng(1)
    idx = np.sort(rng.choice(5000, size=50, replace=False))
    assert a["speed"] == data["speed"][idx].tolist()


def test_sample_of_every_reading_is_all_of_them_in_order(data: dict[str, np.ndarray]) -> None:
    out = run("sample", data, signals=["rpm"], sample_size=5000)
    assert out["rpm"] == data["rpm"].tolist()


def test_sample_larger_than_the_readings_is_an_error(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(OnboardError, match="sample_size 5001 is larger than the 5000"):
        run("sample", data, sample_size=5001)


@pytest.mark.parametrize("bins", [1, 7, 40])
def test_histogram_uses_the_signal_range_and_counts_every_reading(
    data: dict[str, np.ndarray], bins: int
) -> None:
    out = run("histogram", data, signals=list(SIGNALS), bins=bins)
    for s, h in out.items():
        sig = SIGNALS[s]
        assert h["edges"] == np.linspace(sig.low, sig.high, bins + 1).tolist()
        assert len(h["counts"]) == bins
        assert sum(h["counts"]) == 5000
        expected, _ = np.histogram(data[s], bins=bins, range=(sig.low, sig.high))
        assert h["counts"] == expected.tolist()


def test_histogram_counts_out_of_range_readings_in_the_end_bins() -> None:
    readings = {"speed": np.array([-5.0, 0.0, 99.9, 100.0, 200.0, 250.0])}
    out = run("histogram", readings, signals=["speed"], bins=2)
    assert out["speed"]["edges"] == [0.0, 100.0, 200.0]
    assert out["speed"]["counts"] == [3, 3]


def test_histogram_edges_are_the_same_for_every_client() -> None:
    sensors = SimulatedSensors()
    outs = [
        run("histogram", sensors.read(c, "h", 0, ["rpm"], 500, 1), signals=["rpm"], bins=10) for c in (1, 2)
    ]
    assert outs[0]["rpm"]["edges"] == outs[1]["rpm"]["edges"]
    assert outs[0]["rpm"]["counts"] != outs[1]["rpm"]["counts"]


def test_threshold_above_lists_strictly_greater_readings_with_their_index() -> None:
    readings = {"speed": np.array([10.0, 50.0, 51.0, 49.0, 80.0])}
    out = run("threshold", readings, signals=["speed"], threshold=50)
    assert out == {"speed": [{"index": 2, "value": 51.0}, {"index": 4, "value": 80.0}]}


def test_threshold_below_lists_strictly_smaller_readings() -> None:
    readings = {"speed": np.array([10.0, 50.0, 51.0, 49.0, 80.0])}
    out = run("threshold", readings, signals=["speed"], threshold=50.0, direction="below")
    assert out == {"speed": [{"index": 0, "value": 10.0}, {"index": 3, "value": 49.0}]}


def test_threshold_agrees_with_numpy_on_a_drive(data: dict[str, np.ndarray]) -> None:
    out = run("threshold", data, signals=["speed"], threshold=100.0)
    idx = np.flatnonzero(data["speed"] > 100.0)
    assert [e["index"] for e in out["speed"]] == idx.tolist()
    assert [e["value"] for e in out["speed"]] == data["speed"][idx].tolist()


def test_threshold_with_a_bad_direction_is_an_error(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(OnboardError, match="'above' or 'below'"):
        run("threshold", data, threshold=1.0, direction="sideways")


@pytest.mark.parametrize(
    ("method", "parameter"),
    [("threshold", "threshold"), ("sample", "sample_size"), ("histogram", "bins")],
)
def test_a_missing_parameter_is_named_in_the_error(
    data: dict[str, np.ndarray], method: str, parameter: str
) -> None:
    with pytest.raises(OnboardError, match=f"needs the parameter '{parameter}'"):
        run(method, data)


@pytest.mark.parametrize(("parameter", "value"), [("bins", 0), ("sample_size", -3)])
def test_a_non_positive_size_is_an_error(data: dict[str, np.ndarray], parameter: str, value: int) -> None:
    method = "histogram" if parameter == "bins" else "sample"
    with pytest.raises(OnboardError, match="positive integer"):
        run(method, data, **{parameter: value})


def test_an_unknown_method_suggests_the_closest_one(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(OnboardError, match="did you mean 'median'"):
        run("medain", data)
    with pytest.raises(ValueError, match="built-in methods: "):
        run("frobnicate", data)


def test_custom_is_not_a_builtin_and_says_so(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(OnboardError, match="custom_code"):
        run("custom", data)


def test_a_signal_without_readings_is_an_error(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(OnboardError, match="no readings for signal 'oil'"):
        run("average", data, signals=["speed", "oil"])


def test_non_finite_readings_never_produce_a_silent_nan() -> None:
    readings = {"speed": np.array([1.0, np.nan, 3.0])}
    for method in ("average", "min", "max", "median", "sum", "std", "variance", "collect"):
        with pytest.raises(OnboardError, match="NaN or infinite"):
            run(method, readings, signals=["speed"])


def test_statistics_of_no_readings_are_an_error_except_sum_and_count() -> None:
    empty = {"speed": np.array([])}
    with pytest.raises(OnboardError, match="needs at least one"):
        run("average", empty, signals=["speed"])
    assert run("sum", empty, signals=["speed"]) == {"speed": 0.0}
    assert run("count", empty, signals=["speed"]) == {"speed": 0}


@pytest.mark.parametrize("method", sorted(BUILTIN_METHODS))
def test_every_builtin_returns_plain_json(data: dict[str, np.ndarray], method: str) -> None:
    kw: dict[str, Any] = {"threshold": 60.0, "sample_size": 10, "bins": 5}
    assert_plain_json(run(method, data, **kw))


# --- federated learning -----------------------------------------------------------------------

TRAIN = ("speed", "rpm", "fuel_rate")  # features speed, rpm; target fuel_rate


def reference_train(data: dict[str, np.ndarray], w: np.ndarray) -> tuple[np.ndarray, float]:
    x = np.column_stack([np.ones(data["speed"].size)] + [data[s] / SIGNALS[s].scale for s in TRAIN[:-1]])
    y = data[TRAIN[-1]] / SIGNALS[TRAIN[-1]].scale
    for _ in range(10):
        w = w - 0.1 * 2.0 / y.size * x.T @ (x @ w - y)
    return w, float(np.mean((x @ w - y) ** 2))


def test_train_takes_ten_gradient_steps_from_zero(data: dict[str, np.ndarray]) -> None:
    out = run("train", data, signals=TRAIN)
    w, loss = reference_train(data, np.zeros(3))
    assert out["features"] == ["speed", "rpm"]
    assert out["target"] == "fuel_rate"
    assert out["n_samples"] == 5000
    np.testing.assert_allclose(out["weights"], w, rtol=1e-9, atol=1e-12)
    assert out["loss"] == pytest.approx(loss, rel=1e-9)
    assert_plain_json(out)


def test_train_continues_from_the_given_model(data: dict[str, np.ndarray]) -> None:
    start = {"weights": [0.1, -0.2, 0.3]}
    out = run_builtin(OnboardParams("train", TRAIN), data, start)
    w, loss = reference_train(data, np.array(start["weights"]))
    np.testing.assert_allclose(out["weights"], w, rtol=1e-9, atol=1e-12)  # type: ignore[index]
    assert out["loss"] == pytest.approx(loss, rel=1e-9)  # type: ignore[index]


def test_train_accepts_an_averaged_model_with_extra_keys(data: dict[str, np.ndarray]) -> None:
    averaged = {
        "features": ["speed", "rpm"],
        "target": "fuel_rate",
        "weights": [0.1, -0.2, 0.3],
        "n_samples": 15000,
        "loss": 0.5,
        "clients": 3,
    }
    out: Any = run_builtin(OnboardParams("train", TRAIN), data, averaged)
    w, _ = reference_train(data, np.array(averaged["weights"]))
    np.testing.assert_allclose(out["weights"], w, rtol=1e-9, atol=1e-12)
    assert out["n_samples"] == 5000


def test_train_reduces_the_loss_when_repeated_from_its_own_output(
    data: dict[str, np.ndarray],
) -> None:
    params = OnboardParams("train", TRAIN)
    model: Any = None
    losses = []
    for _ in range(5):
        model = run_builtin(params, data, model)
        losses.append(model["loss"])
    assert all(b < a for a, b in itertools.pairwise(losses))


@pytest.mark.parametrize(
    "model",
    [
        {"weights": [0.0, 0.0]},
        {"weights": "zeros"},
        {"weights": [0.0, None, 1.0]},
        {"weights": [0.0, float("nan"), 1.0]},
        {"coefficients": [0.0, 0.0, 0.0]},
        [0.0, 0.0, 0.0],
        {"features": ["rpm", "speed"], "weights": [0.0, 0.0, 0.0]},
        {"target": "rpm", "weights": [0.0, 0.0, 0.0]},
    ],
    ids=[
        "too-short",
        "not-a-list",
        "not-numbers",
        "nan",
        "no-weights",
        "bare-list",
        "other-features",
        "other-target",
    ],
)
def test_train_rejects_a_model_of_the_wrong_shape(data: dict[str, np.ndarray], model: object) -> None:
    with pytest.raises(OnboardError, match="model"):
        run_builtin(OnboardParams("train", TRAIN), data, model)


def test_train_needs_features_and_a_target(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(OnboardError, match="at least two signals"):
        run("train", data, signals=["speed"])


def test_train_divergence_is_reported_not_returned_as_nan() -> None:
    huge = {"speed": np.full(10, 1e200), "fuel_rate": np.full(10, 1e200)}
    with pytest.raises(OnboardError, match="not finite"):
        run("train", huge, signals=["speed", "fuel_rate"])


def test_params_accept_a_single_signal_name() -> None:
    assert OnboardParams("max", "speed").signals == ("speed",)  # type: ignore[arg-type]
    assert OnboardParams("max", ["speed", "rpm"]).signals == ("speed", "rpm")  # type: ignore[arg-type]


def test_median_histogram_and_train_handle_a_million_readings() -> None:
    big = {"speed": np.random.default_rng(0).uniform(0.0, 200.0, 1_000_000)}
    median = run("median", big, signals=["speed"])
    hist = run("histogram", big, signals=["speed"], bins=50)
    train = run_builtin(OnboardParams("train", ("speed", "speed")), big)
    assert median["speed"] == pytest.approx(float(np.median(big["speed"])))
    assert sum(hist["speed"]["counts"]) == 1_000_000
    assert isinstance(train, dict)
