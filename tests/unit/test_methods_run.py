"""The methods' functions through the edge and the cloud: quantile against numpy, a toy method
registered alone, and the extra-methods environment variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oodida_cloud.aggregate import AggregationError, aggregate
from oodida_core.methods import EXTRA_METHODS_ENV, registered
from oodida_core.protocol.signals import SIGNALS
from oodida_edge.onboard import OnboardError, OnboardParams, run_builtin
from oodida_edge.sources.simulated import SimulatedSensors
from tests.system.toy_methods import RANGE

ROOT = Path(__file__).resolve().parents[2]
SIGS = ("speed", "rpm", "fuel_rate")


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return SimulatedSensors().read(4, "methods", 0, list(SIGNALS), 2000, 1)


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.9, 1.0, 1])
def test_onboard_quantile_is_numpys_linear_quantile_per_signal(data: dict[str, np.ndarray], q: float) -> None:
    out: Any = run_builtin(OnboardParams("quantile", SIGS, q=q), data)
    assert list(out) == list(SIGS)
    for s in SIGS:
        assert out[s] == float(np.quantile(data[s], q, method="linear"))
        assert type(out[s]) is float


def test_onboard_quantile_without_q_is_the_median(data: dict[str, np.ndarray]) -> None:
    out: Any = run_builtin(OnboardParams("quantile", ("speed",)), data)
    assert out["speed"] == pytest.approx(float(np.median(data["speed"])))


@pytest.mark.parametrize("q", [-0.5, 2.0, float("nan"), "0.5", True])
def test_onboard_quantile_refuses_a_q_outside_zero_to_one(data: dict[str, np.ndarray], q: Any) -> None:
    with pytest.raises(OnboardError, match="q must be a number from 0 to 1"):
        run_builtin(OnboardParams("quantile", ("speed",), q=q), data)


def test_onboard_quantile_of_no_readings_or_nan_readings_is_an_error() -> None:
    with pytest.raises(OnboardError, match="needs at least one"):
        run_builtin(OnboardParams("quantile", ("speed",)), {"speed": np.array([])})
    with pytest.raises(OnboardError, match="not finite"):
        run_builtin(OnboardParams("quantile", ("speed",)), {"speed": np.array([1.0, np.nan])})


VALUES = {
    3: {"speed": 80.5, "rpm": [2100.0, 10.0]},
    1: {"speed": 61.25, "rpm": [3050.0, 20.0]},
    7: {"speed": 99.0, "rpm": [1800.5, 5.0]},
    4: {"speed": 12.0, "rpm": [4000.0, 40.0]},
}


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_offboard_quantile_is_numpys_quantile_over_clients_element_wise(q: float) -> None:
    result: Any = aggregate("quantile", "quantile", VALUES, {"q": q})
    clients = sorted(VALUES)
    speed = np.quantile([VALUES[c]["speed"] for c in clients], q, method="linear")
    rpm = np.quantile([VALUES[c]["rpm"] for c in clients], q, axis=0, method="linear")
    assert result == {"speed": float(speed), "rpm": rpm.tolist()}


def test_offboard_quantile_without_q_is_the_median_and_no_values_give_none() -> None:
    assert aggregate("quantile", "average", VALUES) == aggregate("median", "average", VALUES)
    assert aggregate("quantile", "average", {}) is None


def test_offboard_quantile_refuses_what_other_reductions_refuse() -> None:
    with pytest.raises(AggregationError, match="use offboard 'collect'"):
        aggregate("quantile", "threshold", {1: {"speed": []}})
    with pytest.raises(AggregationError, match="histograms have no quantile"):
        aggregate("quantile", "histogram", {1: {"speed": {"edges": [0.0, 1.0], "counts": [3]}}})


def test_a_toy_method_registered_alone_runs_on_board_and_feeds_the_offboard_methods(
    data: dict[str, np.ndarray],
) -> None:
    with registered(RANGE):
        out: Any = run_builtin(OnboardParams("RANGE", SIGS), data)
        assert out == {s: float(np.ptp(data[s])) for s in SIGS}
        kept = {1: {"speed": 3.0}, 2: {"speed": 5.0}}
        assert aggregate("average", "range", kept) == {"speed": 4.0}
    with pytest.raises(OnboardError, match="unknown on-board method 'RANGE'"):
        run_builtin(OnboardParams("RANGE", SIGS), data)


def test_modules_named_in_the_environment_register_their_methods_at_import() -> None:
    code = (
        "from oodida_core.spec.model import validate_spec; from oodida_core.spec.fields import LISTING_1_1; "
        "print(validate_spec({**LISTING_1_1, 'onboard': 'range'}).onboard)"
    )
    env = {**os.environ, EXTRA_METHODS_ENV: "tests.system.toy_methods", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "range"
