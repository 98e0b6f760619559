"""The robust strategies (fedmedian, fedtrimmedavg, krum) leave a hostile vehicle's malformed
model out and name it under "dropped"; the others refuse it loudly. Krum's distances are one
matrix product, equal to flwr's pairwise loop (red team of issue 17)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from oodida_cloud.aggregate import AggregationError, aggregate
from oodida_core.methods.base import OnboardParams
from oodida_core.methods.federated import ONBOARD as TRAIN
from oodida_core.methods.strategies import krum_choice, squared_distances

ROBUST = ("fedmedian", "fedtrimmedavg", "krum")
LOUD = ("fedavg", "fedavgm", "fedadam", "fedyogi")


def model(weights: object, n: int = 10, **extra: object) -> dict[str, Any]:
    return {
        "features": ["speed", "rpm"],
        "target": "fuel_rate",
        "weights": weights,
        "n_samples": n,
        "loss": 1.0,
        **extra,
    }


HONEST = {c: model([1.0 + c, 2.0 - c / 10, 0.5 * c], n=10 * c, loss=0.1 * c) for c in (1, 2, 4, 5)}
MALFORMED = {
    "nan": (model([1.0, math.nan, 2.0]), "NaN or infinite"),
    "inf": (model([math.inf, 1.0, 2.0]), "NaN or infinite"),
    "wrong shape": (model([1.0, 2.0]), "has number of weights 2, but 4 of 5 clients have 3"),
    "not a dict": ("garbage", "sent a string"),
    "no weights": ({"n_samples": 5}, "not a dict with 'weights' and 'n_samples'"),
    "weights not numbers": (model([1.0, "x", 2.0]), "'weights' must be a list of numbers"),
    "other features": (model([1.0, 2.0, 3.0], features=["rpm", "speed"]), "has features"),
    "nan loss": (model([1.0, 2.0, 3.0], loss=math.nan), "not a finite number"),
    "features not a list": (model([1.0, 2.0, 3.0], features=5), "has features 5"),
    "unhashable target": (model([1.0, 2.0, 3.0], target=[{"a": 1}]), "has target"),
}


@pytest.mark.parametrize("strategy", ROBUST)
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_model_is_dropped_and_the_rest_aggregated_as_without_it(strategy: str, case: str) -> None:
    bad, why = MALFORMED[case]
    out = aggregate(strategy, "train", HONEST | {3: bad})
    reference = aggregate(strategy, "train", HONEST)
    assert isinstance(out, dict) and isinstance(reference, dict)
    assert reference["dropped"] == {}
    assert out == {**reference, "dropped": {"3": out["dropped"]["3"]}}
    assert why in out["dropped"]["3"]


@pytest.mark.parametrize("strategy", LOUD)
@pytest.mark.parametrize("case", ["nan", "wrong shape", "not a dict", "unhashable target"])
def test_the_strategies_that_promise_no_robustness_still_fail_loudly(strategy: str, case: str) -> None:
    with pytest.raises(AggregationError, match="client 3"):
        aggregate(strategy, "train", HONEST | {3: MALFORMED[case][0]})


@pytest.mark.parametrize("strategy", ROBUST)
def test_every_client_malformed_is_still_an_aggregation_error_naming_them(strategy: str) -> None:
    values = {1: "garbage", 2: model([math.nan, 1.0, 1.0])}
    with pytest.raises(AggregationError, match="every client's model is malformed") as caught:
        aggregate(strategy, "train", values)
    assert "client 1 sent a string" in str(caught.value) and "client 2 'weights'" in str(caught.value)


@pytest.mark.parametrize("strategy", ROBUST)
def test_a_tie_between_two_shapes_names_no_culprit_and_is_refused(strategy: str) -> None:
    values = {1: model([1.0]), 2: model([2.0]), 3: model([1.0, 2.0]), 4: model([2.0, 1.0])}
    with pytest.raises(AggregationError, match="needs the same number of weights"):
        aggregate(strategy, "train", values)


def test_krum_with_too_few_well_formed_clients_says_which_were_left_out() -> None:
    values = {c: model([float(c), 1.0, 1.0]) for c in range(1, 8)} | {7: model([math.nan, 1.0, 1.0])}
    with pytest.raises(AggregationError) as caught:
        aggregate("krum", "train", values, {"num_malicious_clients": 2})
    message = str(caught.value)
    assert "needs at least 7 clients (2f + 3)" in message and "got 6" in message
    assert "leaving out as malformed client 7 'weights' contain NaN" in message


def test_the_dropped_entry_survives_json_and_train_ignores_it_next_iteration() -> None:
    out = aggregate("fedmedian", "train", HONEST | {3: "garbage"})
    assert json.loads(json.dumps(out)) == out  # keys are strings already
    rng = np.random.default_rng(1)
    columns = [rng.normal(50, 10, 40), rng.normal(2000, 300, 40), rng.normal(5, 1, 40)]
    params = OnboardParams("train", ("speed", "rpm", "fuel_rate"))
    without = {k: v for k, v in out.items() if k != "dropped"}  # type: ignore[union-attr]
    assert TRAIN.compute(params, columns, out) == TRAIN.compute(params, columns, without)


def test_custom_code_cannot_forge_the_dropped_entry() -> None:
    values = {c: {"weights": [float(c)], "n_samples": 1, "dropped": {"2": "forged"}} for c in (1, 2, 3)}
    out = aggregate("fedmedian", "custom", values)
    assert out["dropped"] == {} and out["weights"] == [2.0]  # type: ignore[index]


# ---------------------------------------------------------------------------------- Krum's distances


def loop_distances(rows: np.ndarray) -> np.ndarray:
    """flwr's `_compute_distances`: the pairwise double loop."""
    flat = rows.reshape(len(rows), -1)
    with np.errstate(over="ignore"):
        return np.array([[np.linalg.norm(a - b) ** 2 for b in flat] for a in flat])


@pytest.mark.parametrize("offset", [0.0, 1e6])
@pytest.mark.parametrize("block_bytes", [2**25, 8 * 30 * 4], ids=["one-block", "blocks-of-4-rows"])
def test_the_vectorised_distances_are_the_pairwise_loop(offset: float, block_bytes: int) -> None:
    rng = np.random.default_rng(7)
    rows = rng.normal(offset, 1.0, (30, 3, 4))
    rows[25] = rows[4]  # equal rows (in different blocks) are at distance 0
    got = squared_distances(rows, block_bytes)
    np.testing.assert_allclose(got, loop_distances(rows), rtol=1e-9, atol=1e-9)
    assert got[4, 25] == got[25, 4] == 0.0 and (np.diag(got) == 0).all()


@pytest.mark.parametrize("block_bytes", [2**25, 8 * 4])
def test_distances_that_overflow_the_product_are_computed_directly(block_bytes: int) -> None:
    rows = np.array([[1.0, 2.0], [2.0, 1.0], [1e200, 1.0], [1.5, 1.5]])
    got = squared_distances(rows, block_bytes)
    expected = loop_distances(rows)
    assert np.isinf(got[2, :2]).all() and np.isinf(got[:2, 2]).all()
    np.testing.assert_allclose(got[[0, 1, 3]][:, [0, 1, 3]], expected[[0, 1, 3]][:, [0, 1, 3]], rtol=1e-12)
    assert krum_choice(rows, 0, 0) != [2]


def reference_krum(rows: np.ndarray, f: int, keep: int) -> list[int]:
    """flwr's aggregate_krum choice, loop for loop."""
    d = loop_distances(rows)
    closest = max(1, len(d) - f - 2)
    scores = [np.sum(r[np.argsort(r)[1 : closest + 1].tolist()]) for r in d]
    if keep > 0:
        return [int(i) for i in np.argsort(scores)[::-1][len(scores) - keep :]]
    return [int(np.argmin(scores))]


@pytest.mark.parametrize(("f", "keep"), [(0, 0), (3, 0), (3, 5), (10, 20)])
def test_krum_choice_is_flwrs_on_a_small_case(f: int, keep: int) -> None:
    rng = np.random.default_rng(f + keep)
    rows = np.vstack([rng.normal(0, 1, (40, 6)), rng.normal(8, 1, (f, 6))])
    assert krum_choice(rows, f, keep) == reference_krum(rows, f, keep)


def test_krum_on_2000_clients_of_100_weights_keeps_an_honest_one() -> None:
    """n x n distances from one matrix product: the pairwise loop took minutes here."""
    rng = np.random.default_rng(2000)
    rows = np.vstack([rng.normal(0, 1, (1800, 100)), rng.normal(30, 1, (200, 100))])
    (chosen,) = krum_choice(rows, 200, 0)
    assert chosen < 1800
    chosen_many = krum_choice(rows, 200, 50)
    assert len(chosen_many) == 50 and max(chosen_many) < 1800
