"""Each federated strategy against flwr's own implementation (a peer nobody here wrote).

The same client updates and weights go to `oodida_cloud.aggregate.aggregate` and to flwr's
strategy (`flwr.server.strategy.*.aggregate_fit`), over several rounds for the stateful ones:
our side chains each round's value into the next as the cloud does (the previous iteration's
value), flwr keeps its own state. Every round's model must agree within float tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from oodida_cloud.aggregate import aggregate
from oodida_core.methods.federated import ONBOARD as TRAIN

flwr_strategy = pytest.importorskip(
    "flwr.server.strategy", reason="flwr is not installed (pip install -e '.[dev]' installs it)"
)
flwr_common = pytest.importorskip("flwr.common", reason="flwr is not installed")
flwr_aggregate = pytest.importorskip("flwr.server.strategy.aggregate", reason="flwr is not installed")

FEATURES, TARGET = ["speed", "rpm"], "fuel_rate"
ROUNDS = 4
RTOL, ATOL = 1e-9, 1e-12


def fit_results(updates: list[tuple[np.ndarray, int]]) -> list[tuple[Any, Any]]:
    """flwr's (client proxy, FitRes) pairs; aggregate_fit reads only the FitRes."""
    ok = flwr_common.Status(code=flwr_common.Code.OK, message="")
    return [
        (None, flwr_common.FitRes(ok, flwr_common.ndarrays_to_parameters([w]), n, {})) for w, n in updates
    ]


def flwr_round(strategy: Any, server_round: int, updates: list[tuple[np.ndarray, int]]) -> np.ndarray:
    parameters, _ = strategy.aggregate_fit(server_round, fit_results(updates), [])
    (weights,) = flwr_common.parameters_to_ndarrays(parameters)
    return np.asarray(weights)


def our_values(updates: list[tuple[np.ndarray, int]], losses: list[float] | None = None) -> dict[int, Any]:
    """The updates as on-board 'train' results of clients 1, 2, ... (weights, n_samples, loss)."""
    losses = losses or [0.5 + i for i in range(len(updates))]
    return {
        cid: {"features": FEATURES, "target": TARGET, "weights": w.tolist(), "n_samples": n, "loss": loss}
        for cid, ((w, n), loss) in enumerate(zip(updates, losses, strict=True), start=1)
    }


def client_updates(rng: np.random.Generator, x: np.ndarray, clients: int = 5) -> list[tuple[np.ndarray, int]]:
    """What clients send back after training from the global model x: x plus a client drift."""
    return [(x + rng.normal(0.3, 1.0, x.shape), int(rng.integers(1, 500))) for _ in range(clients)]


def run_rounds(
    name: str, parameters: dict[str, Any], flwr_factory: Callable[[Any], Any], shape: tuple[int, ...] = (3,)
) -> list[dict[str, Any]]:
    """ROUNDS rounds of `name` next to flwr's strategy; asserts every round's model agrees."""
    rng = np.random.default_rng(17)
    x = np.zeros(shape)  # the first iteration's clients trained from None: zeros
    strategy = flwr_factory(flwr_common.ndarrays_to_parameters([x.copy()]))
    previous: object = None
    values = []
    for server_round in range(1, ROUNDS + 1):
        updates = client_updates(rng, x)
        expected = flwr_round(strategy, server_round, updates)
        value = aggregate(name, "train", our_values(updates), parameters, previous)
        assert isinstance(value, dict)
        got = np.asarray(value["weights"])
        assert got.shape == expected.shape
        np.testing.assert_allclose(
            got, expected, rtol=RTOL, atol=ATOL, err_msg=f"{name} round {server_round}"
        )
        previous, x = value, got  # the value of iteration i is the model of iteration i+1
        values.append(value)
    return values


# ---------------------------------------------------------------------------------- FedAvg, FedProx


@pytest.mark.parametrize("flwr_name", ["FedAvg", "FedProx"])
def test_fedavg_is_flwr_fedavg_and_fedprox_server_side(flwr_name: str) -> None:
    kwargs = {"proximal_mu": 0.5} if flwr_name == "FedProx" else {}
    run_rounds(
        "fedavg",
        {},
        lambda init: getattr(flwr_strategy, flwr_name)(initial_parameters=init, **kwargs),
    )


def test_fedavg_is_flwr_aggregate_on_a_model_of_several_dimensions() -> None:
    rng = np.random.default_rng(3)
    updates = [(rng.normal(size=(2, 3)), n) for n in (10, 200, 35)]
    value = aggregate(
        "fedavg",
        "custom",
        {i: {"weights": w.tolist(), "n_samples": n} for i, (w, n) in enumerate(updates, 1)},
    )
    (expected,) = flwr_aggregate.aggregate([([w], n) for w, n in updates])
    np.testing.assert_allclose(np.asarray(value["weights"]), expected, rtol=RTOL)  # type: ignore[index]


def test_fedprox_train_results_average_like_flwr_fedprox() -> None:
    """Clients that trained with FedProx's proximal term, averaged by flwr's FedProx and ours."""
    from oodida_core.methods.base import OnboardParams

    rng = np.random.default_rng(5)
    received = {"features": FEATURES, "target": TARGET, "weights": [0.2, -0.1, 0.4]}
    params = OnboardParams("train", (*FEATURES, TARGET), proximal_mu=1.5)
    values = {}
    for cid in (1, 2, 3):
        columns = [rng.normal(50, 20, 80), rng.normal(2000, 500, 80), rng.normal(5, 2, 80)]
        values[cid] = TRAIN.compute(params, columns, received)
    strategy = flwr_strategy.FedProx(proximal_mu=1.5)
    updates = [(np.asarray(v["weights"]), v["n_samples"]) for v in values.values()]  # type: ignore[index]
    expected = flwr_round(strategy, 1, updates)
    value = aggregate("fedavg", "train", values)
    np.testing.assert_allclose(np.asarray(value["weights"]), expected, rtol=RTOL)  # type: ignore[index]


# ---------------------------------------------------------------------------------- server optimisers


@pytest.mark.parametrize(
    "hyper",
    [
        {},
        {"server_learning_rate": 1.0, "server_momentum": 0.9},
        {"server_learning_rate": 0.5, "server_momentum": 0.0},
        {"server_learning_rate": 0.7, "server_momentum": 0.5},
    ],
    ids=["defaults", "momentum", "learning-rate", "both"],
)
def test_fedavgm_is_flwr_fedavgm_over_rounds(hyper: dict[str, float]) -> None:
    values = run_rounds(
        "fedavgm", hyper, lambda init: flwr_strategy.FedAvgM(initial_parameters=init, **hyper)
    )
    assert [v["server"]["round"] for v in values] == [1, 2, 3, 4]


ADAPTIVE = [
    {},
    {"eta": 0.3, "beta_1": 0.5, "beta_2": 0.9, "tau": 0.01},
    {"eta": 0.05, "beta_1": 0.0, "beta_2": 0.5, "tau": 1e-6},
]


@pytest.mark.parametrize("name", ["FedAdam", "FedYogi"])
@pytest.mark.parametrize("hyper", ADAPTIVE, ids=["defaults", "tuned", "no-momentum"])
def test_fedadam_and_fedyogi_are_flwr_over_rounds(name: str, hyper: dict[str, float]) -> None:
    values = run_rounds(
        name.lower(), hyper, lambda init: getattr(flwr_strategy, name)(initial_parameters=init, **hyper)
    )
    assert [v["server"]["strategy"] for v in values] == [name.lower()] * ROUNDS
    assert [v["server"]["round"] for v in values] == [1, 2, 3, 4]


def test_fedadam_matches_flwr_on_a_matrix_model() -> None:
    run_rounds(
        "fedadam",
        {"eta": 0.2},
        lambda init: flwr_strategy.FedAdam(initial_parameters=init, eta=0.2),
        shape=(2, 4),
    )


def test_the_server_state_is_what_carries_the_optimiser_from_round_to_round() -> None:
    """Without the previous value (state and model) round 2 would be a fresh round 1: the
    result differs from flwr's round 2, with it it is flwr's round 2."""
    rng = np.random.default_rng(9)
    strategy = flwr_strategy.FedAdam(initial_parameters=flwr_common.ndarrays_to_parameters([np.zeros(3)]))
    first = client_updates(rng, np.zeros(3))
    flwr_round(strategy, 1, first)
    round_1 = aggregate("fedadam", "train", our_values(first), {}, None)
    x = np.asarray(round_1["weights"])  # type: ignore[index]
    second = client_updates(rng, x)
    expected = flwr_round(strategy, 2, second)
    carried = aggregate("fedadam", "train", our_values(second), {}, round_1)
    fresh = aggregate("fedadam", "train", our_values(second), {}, {**round_1, "server": None})  # type: ignore[dict-item]
    np.testing.assert_allclose(carried["weights"], expected, rtol=RTOL)  # type: ignore[index]
    assert not np.allclose(fresh["weights"], expected, rtol=1e-6)  # type: ignore[index]


# ---------------------------------------------------------------------------------- robust aggregation


def robust_updates(clients: int, seed: int, shape: tuple[int, ...] = (4,)) -> list[tuple[np.ndarray, int]]:
    """Honest clients near one model and two attackers far away."""
    rng = np.random.default_rng(seed)
    honest = [(rng.normal(1.0, 0.1, shape), int(rng.integers(1, 300))) for _ in range(clients - 2)]
    attackers = [(rng.normal(50.0, 5.0, shape), 1000) for _ in range(2)]
    return honest + attackers


@pytest.mark.parametrize("clients", [3, 6, 9])
def test_fedmedian_is_flwr_aggregate_median(clients: int) -> None:
    updates = robust_updates(clients, seed=clients)
    value = aggregate("fedmedian", "train", our_values(updates))
    (expected,) = flwr_aggregate.aggregate_median([([w], n) for w, n in updates])
    np.testing.assert_allclose(value["weights"], expected, rtol=RTOL)  # type: ignore[index]
    assert flwr_round(flwr_strategy.FedMedian(), 1, updates) == pytest.approx(expected)


@pytest.mark.parametrize(("clients", "beta"), [(5, 0.2), (10, 0.2), (10, 0.0), (9, 0.3), (7, 0.49)])
def test_fedtrimmedavg_is_flwr_fedtrimmedavg(clients: int, beta: float) -> None:
    updates = robust_updates(clients, seed=clients + 1, shape=(3, 2))
    value = aggregate("fedtrimmedavg", "train", our_values(updates), {"beta": beta})
    expected = flwr_round(flwr_strategy.FedTrimmedAvg(beta=beta), 1, updates)
    np.testing.assert_allclose(value["weights"], expected, rtol=RTOL)  # type: ignore[index]
    assert value["trimmed"] == int(beta * clients)  # type: ignore[index]


@pytest.mark.parametrize(
    ("clients", "malicious", "keep"), [(3, 0, 0), (7, 2, 0), (7, 2, 3), (9, 2, 5), (10, 3, 0), (5, 1, 1)]
)
def test_krum_and_multikrum_are_flwr_krum(clients: int, malicious: int, keep: int) -> None:
    updates = robust_updates(clients, seed=clients * 10 + keep)
    parameters = {"num_malicious_clients": malicious, "num_clients_to_keep": keep}
    value = aggregate("krum", "train", our_values(updates), parameters)
    strategy = flwr_strategy.Krum(num_malicious_clients=malicious, num_clients_to_keep=keep)
    expected = flwr_round(strategy, 1, updates)
    np.testing.assert_allclose(value["weights"], expected, rtol=RTOL)  # type: ignore[index]
    if malicious >= 2:  # tolerating the two attackers (the last two client ids) keeps them out
        assert not {clients - 1, clients} & set(value["selected"])  # type: ignore[index]
    assert len(value["selected"]) == max(keep, 1)  # type: ignore[index]
