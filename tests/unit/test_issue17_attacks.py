"""Red team of issue 17: what a hostile vehicle's answer can do to the federated strategies."""

from __future__ import annotations

import pytest

from oodida_cloud.aggregate import AggregationError, aggregate

LOUD = ("fedavg", "fedavgm", "fedadam", "fedyogi")  # the robust ones drop the client instead
ROBUST = ("fedmedian", "fedtrimmedavg", "krum")


def model(n_samples: object = 10, loss: object = 0.5) -> dict[str, object]:
    return {
        "weights": [1.0, 2.0],
        "n_samples": n_samples,
        "loss": loss,
        "features": ["speed"],
        "target": "rpm",
    }


@pytest.mark.parametrize("strategy", LOUD)
@pytest.mark.parametrize("n_samples", [10**400, 10**308])
def test_an_n_samples_beyond_a_float_is_refused_not_raised(strategy: str, n_samples: int) -> None:
    values = {cid: model() for cid in range(1, 4)} | {2: model(n_samples)}
    with pytest.raises(AggregationError, match="client 2 reported n_samples"):
        aggregate(strategy, "train", values)


@pytest.mark.parametrize("strategy", LOUD)
def test_a_loss_beyond_a_float_is_refused_not_raised(strategy: str) -> None:
    values = {cid: model() for cid in range(1, 4)} | {3: model(loss=10**400)}
    with pytest.raises(AggregationError, match="loss as a number"):
        aggregate(strategy, "train", values)


def test_custom_code_with_a_loss_beyond_a_float_is_combined_without_its_loss() -> None:
    values = {1: model(loss=10**400), 2: model()}
    out = aggregate("fedavg", "custom", values)
    assert isinstance(out, dict) and out["weights"] == [1.0, 2.0] and "loss" not in out


@pytest.mark.parametrize("strategy", ROBUST)
@pytest.mark.parametrize(("bad", "why"), [(model(10**400), "n_samples"), (model(loss=10**400), "loss")])
def test_a_robust_strategy_leaves_out_an_n_samples_or_loss_beyond_a_float(
    strategy: str, bad: dict[str, object], why: str
) -> None:
    values = {cid: model() for cid in range(1, 5)} | {2: bad}
    out = aggregate(strategy, "train", values)
    assert isinstance(out, dict) and out["weights"] == [1.0, 2.0]
    assert list(out["dropped"]) == ["2"] and why in out["dropped"]["2"]
