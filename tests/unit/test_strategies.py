"""The federated strategies' rules: what they refuse and why, the spec keys they take, FedProx's
proximal term in on-board `train`, and the federated custom code with one signal.
(Their arithmetic is checked against flwr in test_strategies_flwr.py.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from oodida_cloud.aggregate import AggregationError, aggregate, needs_previous
from oodida_cloud.planning import onboard_tasks
from oodida_core.methods.base import OnboardParams
from oodida_core.methods.federated import ONBOARD as TRAIN
from oodida_core.protocol.errors import SpecError
from oodida_core.spec.model import AssignmentSpec, validate_spec

STRATEGIES = ("fedavg", "fedavgm", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum")
LOUD = ("fedavg", "fedavgm", "fedadam", "fedyogi")
"""The strategies that promise no robustness: they refuse a malformed model (the robust ones
leave it out, test_strategies_robust.py)."""
FEDERATED: dict[str, Any] = {
    "name": "fl",
    "mode": "federated",
    "clients": "all",
    "signals": ["speed", "rpm", "fuel_rate"],
    "onboard": "train",
    "offboard": "fedavg",
    "frequency": 1,
    "samples": 100,
    "iterations": 3,
}


def model(weights: object, n: int = 10, **extra: object) -> dict[str, Any]:
    return {
        "features": ["speed", "rpm"],
        "target": "fuel_rate",
        "weights": weights,
        "n_samples": n,
        "loss": 1.0,
        **extra,
    }


def refusal(
    offboard: str, values: dict[int, Any], parameters: dict[str, Any] | None = None, previous: object = None
) -> str:
    with pytest.raises(AggregationError) as caught:
        aggregate(offboard, "train", values, parameters, previous)
    return str(caught.value)


def spec_issues(**changes: object) -> dict[str, list[str]]:
    with pytest.raises(SpecError) as caught:
        validate_spec({**FEDERATED, **changes})
    found: dict[str, list[str]] = {}
    for issue in caught.value.issues:
        found.setdefault(issue.field, []).append(issue.rule)
    return found


# ---------------------------------------------------------------------------------- bad client models


@pytest.mark.parametrize("offboard", LOUD)
def test_clients_that_disagree_on_the_shape_are_named(offboard: str) -> None:
    values = {c: model([1.0, 2.0, 3.0]) for c in (1, 2, 3, 4, 5)} | {4: model([1.0, 2.0])}
    message = refusal(offboard, values)
    assert message.startswith(f"{offboard} needs the same number of weights on every client")
    assert "client 4 has 2" in message


@pytest.mark.parametrize("offboard", LOUD)
def test_a_value_that_is_no_model_is_refused_saying_what_would_work(offboard: str) -> None:
    message = refusal(offboard, {1: model([1.0]), 2: {"speed": 3.0}})
    assert f"{offboard} combines models, but client 2 sent" in message
    assert "'weights'" in message and "'n_samples'" in message


@pytest.mark.parametrize("offboard", LOUD)
def test_weights_that_are_not_numbers_are_refused(offboard: str) -> None:
    message = refusal(offboard, {1: model([1.0, "x"]), 2: model([1.0, 2.0])})
    assert f"{offboard}: client 1's 'weights' must be a list of numbers" in message


@pytest.mark.parametrize("offboard", LOUD)
def test_clients_that_trained_on_different_features_are_refused(offboard: str) -> None:
    values = {c: model([1.0, 2.0, 3.0]) for c in (1, 2, 3)} | {
        3: {**model([1.0, 2.0, 3.0]), "features": ["rpm", "speed"]}
    }
    assert "the same features on every client" in refusal(offboard, values)


def test_krum_with_too_few_clients_says_how_many_it_needs() -> None:
    values = {c: model([float(c)]) for c in range(1, 7)}
    message = refusal("krum", values, {"num_malicious_clients": 2})
    assert "krum with num_malicious_clients 2 needs at least 7 clients (2f + 3)" in message
    assert "got 6" in message
    assert aggregate("krum", "train", values, {"num_malicious_clients": 1})["selected"]  # type: ignore[index]


def test_multikrum_cannot_keep_more_than_the_honest_clients() -> None:
    values = {c: model([float(c)]) for c in range(1, 8)}
    message = refusal("krum", values, {"num_malicious_clients": 2, "num_clients_to_keep": 6})
    assert "num_clients_to_keep 6 is more than the 7 clients minus the 2 num_malicious_clients (5)" in message


@pytest.mark.parametrize("beta", [0.5, -0.1, 0.7])
def test_a_trim_fraction_out_of_range_is_refused(beta: float) -> None:
    values = {c: model([float(c)]) for c in (1, 2, 3)}
    assert "fedtrimmedavg: beta must be a number from 0 to 0.5 (excluded)" in refusal(
        "fedtrimmedavg", values, {"beta": beta}
    )
    assert (
        "must be a number from 0 to 0.5 (excluded)"
        in spec_issues(offboard="fedtrimmedavg", beta=beta)["beta"][0]
    )


@pytest.mark.parametrize("offboard", ["fedavgm", "fedadam", "fedyogi"])
def test_a_server_optimiser_refuses_clients_whose_model_is_not_the_one_they_were_sent(offboard: str) -> None:
    previous = aggregate(offboard, "train", {1: model([1.0, 2.0, 3.0]), 2: model([2.0, 2.0, 2.0])})
    message = refusal(offboard, {1: model([1.0, 2.0]), 2: model([2.0, 2.0])}, previous=previous)
    assert "the clients sent weights of shape (2,), but the model they were sent" in message
    assert "has shape (3,)" in message


@pytest.mark.parametrize("offboard", ["fedavgm", "fedadam", "fedyogi"])
def test_a_server_optimiser_ignores_any_state_a_vehicle_sends(offboard: str) -> None:
    """Custom code may return a 'server' key of its own: the strategy's state is the cloud's."""
    forged = {"strategy": offboard, "round": 99, "m": [1e6], "v": [1e-9], "momentum": [1e6]}
    honest = {1: {"weights": [1.0], "n_samples": 5}, 2: {"weights": [3.0], "n_samples": 5}}
    sneaky = {c: {**v, "server": forged} for c, v in honest.items()}
    clean, attacked = aggregate(offboard, "custom", honest), aggregate(offboard, "custom", sneaky)
    assert attacked == clean
    assert clean["server"]["round"] == 1  # type: ignore[index]


def test_only_the_server_optimisers_read_the_previous_value() -> None:
    assert [s for s in STRATEGIES if needs_previous(s)] == ["fedavgm", "fedadam", "fedyogi"]
    assert not needs_previous("custom") and not needs_previous("average")


def test_a_server_optimiser_with_no_previous_value_starts_from_zeros_as_train_does() -> None:
    """FedAvgM with learning rate 1 and no momentum is FedAvg; from zeros, the first step of
    FedAdam moves every weight by the same bias-corrected eta toward the average."""
    values = {1: model([1.0, -2.0], n=1), 2: model([3.0, -4.0], n=3)}
    avg = aggregate("fedavg", "train", values)
    avgm = aggregate("fedavgm", "train", values)
    np.testing.assert_allclose(avgm["weights"], avg["weights"])  # type: ignore[index]
    adam = aggregate("fedadam", "train", values, {"eta": 0.1})
    assert np.sign(adam["weights"]).tolist() == [1.0, -1.0]  # type: ignore[index]
    step = 0.1 * np.sqrt(1 - 0.99**2) / (1 - 0.9**2)  # m / sqrt(v) is the sign of the average
    np.testing.assert_allclose(np.abs(adam["weights"]), step, rtol=1e-6)  # type: ignore[index]


# ---------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    ("offboard", "defaults"),
    [
        ("fedadam", {"eta": 0.1, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-9}),
        ("fedyogi", {"eta": 0.01, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}),
        ("fedavgm", {"server_learning_rate": 1.0, "server_momentum": 0.0}),
        ("fedtrimmedavg", {"beta": 0.2}),
        ("krum", {"num_malicious_clients": 0, "num_clients_to_keep": 0}),
    ],
)
def test_each_strategy_gets_flwrs_defaults(offboard: str, defaults: dict[str, float]) -> None:
    spec = validate_spec({**FEDERATED, "offboard": offboard})
    assert isinstance(spec, AssignmentSpec)
    assert {k: getattr(spec, k) for k in defaults} == defaults
    assert spec.proximal_mu == 0.0


@pytest.mark.parametrize(
    ("key", "value", "offboard", "owners"),
    [
        ("eta", 0.1, "fedavg", "offboard 'fedadam' or offboard 'fedyogi'"),
        ("server_momentum", 0.9, "fedadam", "offboard 'fedavgm'"),
        ("beta", 0.1, "krum", "offboard 'fedtrimmedavg'"),
        ("num_malicious_clients", 1, "fedmedian", "offboard 'krum'"),
    ],
)
def test_a_strategy_parameter_with_another_method_is_refused(
    key: str, value: object, offboard: str, owners: str
) -> None:
    assert spec_issues(offboard=offboard, **{key: value})[key] == [f"only allowed with {owners}"]


def test_proximal_mu_belongs_to_onboard_train() -> None:
    custom = {**FEDERATED, "onboard": "custom", "proximal_mu": 0.1}
    with pytest.raises(SpecError, match="only allowed with onboard 'train'"):
        validate_spec(custom)
    assert validate_spec({**FEDERATED, "proximal_mu": 0.1}).proximal_mu == 0.1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("eta", 0, "must be a number from 0 (excluded) to 10"),
        ("beta_1", 1, "must be a number from 0 to 1 (excluded)"),
        ("beta_2", 1.5, "must be a number from 0 to 1 (excluded)"),
        ("tau", 0.0, "must be a number from 0 (excluded) to 1"),
        ("eta", "fast", "must be a number from 0 (excluded) to 10"),
    ],
)
def test_a_server_optimiser_parameter_out_of_range_is_refused(key: str, value: object, rule: str) -> None:
    assert spec_issues(offboard="fedadam", **{key: value})[key] == [rule]


def test_the_range_of_a_parameter_is_in_the_json_schema() -> None:
    from oodida_core.spec.model import spec_json_schema

    props = spec_json_schema()["$defs"]["AssignmentSpec"]["properties"]
    assert props["beta"]["anyOf"][0] == {"type": "number", "minimum": 0, "exclusiveMaximum": 0.5}
    assert props["tau"]["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0, "maximum": 1}


def test_an_onboard_task_carries_the_onboard_parameters_only() -> None:
    spec = validate_spec({**FEDERATED, "offboard": "fedadam", "proximal_mu": 0.5, "eta": 0.2})
    assert isinstance(spec, AssignmentSpec)
    (task,) = onboard_tasks(spec, "a" * 32, "ana", 0, [1], None, 1e10)
    assert task.proximal_mu == 0.5
    assert "eta" not in task.model_dump()


# ---------------------------------------------------------------------------------- signals


def test_train_needs_two_signals_and_says_which_is_the_target() -> None:
    rules = spec_issues(signals=["speed"])["signals"]
    assert rules == [
        "onboard 'train' needs at least 2 signals: the features, then the target "
        "(the last listed signal is the target)"
    ]


@pytest.mark.parametrize("signals", [["speed"], "speed", ["speed", "rpm"]])
def test_federated_custom_code_takes_one_signal_or_more(signals: object) -> None:
    spec = validate_spec({**FEDERATED, "onboard": "custom", "signals": signals})
    assert isinstance(spec, AssignmentSpec) and spec.mode == "federated"


# ---------------------------------------------------------------------------------- FedProx


@pytest.fixture()
def columns() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [rng.normal(60, 20, 300), rng.normal(2500, 600, 300), rng.normal(6, 2, 300)]


PARAMS = ("speed", "rpm", "fuel_rate")
RECEIVED = {"features": ["speed", "rpm"], "target": "fuel_rate", "weights": [0.5, -0.3, 0.8]}


def test_proximal_mu_zero_is_plain_training(columns: list[np.ndarray]) -> None:
    plain = TRAIN.compute(OnboardParams("train", PARAMS), columns, RECEIVED)
    zero = TRAIN.compute(OnboardParams("train", PARAMS, proximal_mu=0.0), columns, RECEIVED)
    assert zero == plain


def test_the_proximal_term_is_flwrs_mu_over_2_times_the_squared_distance_to_the_received_model(
    columns: list[np.ndarray],
) -> None:
    """Ten gradient steps (rate 0.1) on MSE + mu/2 ||w - w_received||^2, as flwr's FedProx
    documents the proximal term; the reported loss stays the MSE."""
    from oodida_core.protocol.signals import SIGNALS

    mu = 2.0
    x = np.column_stack(
        [np.ones(300), columns[0] / SIGNALS["speed"].scale, columns[1] / SIGNALS["rpm"].scale]
    )
    y = columns[2] / SIGNALS["fuel_rate"].scale
    w0 = np.asarray(RECEIVED["weights"])
    w = w0.copy()
    for _ in range(10):
        w = w - 0.1 * (2.0 / 300 * x.T @ (x @ w - y) + mu * (w - w0))
    out = TRAIN.compute(OnboardParams("train", PARAMS, proximal_mu=mu), columns, RECEIVED)
    np.testing.assert_allclose(out["weights"], w, rtol=1e-9)  # type: ignore[index]
    assert out["loss"] == pytest.approx(float(np.mean((x @ w - y) ** 2)), rel=1e-9)  # type: ignore[index]


def test_a_larger_proximal_mu_keeps_the_local_model_nearer_the_received_one(
    columns: list[np.ndarray],
) -> None:
    w0 = np.asarray(RECEIVED["weights"])
    drift = [
        float(
            np.linalg.norm(
                np.asarray(
                    TRAIN.compute(OnboardParams("train", PARAMS, proximal_mu=mu), columns, RECEIVED)[
                        "weights"
                    ]
                )
                - w0
            )
        )  # type: ignore[index]
        for mu in (0.0, 0.5, 2.0, 8.0)
    ]
    assert drift == sorted(drift, reverse=True) and drift[-1] < drift[0] / 2


# ---------------------------------------------------------------------------------- the cloud's fan-in


def test_the_fan_in_hands_the_stored_previous_value_to_a_server_optimiser() -> None:
    """iteration.combine passes the cloud's previous value on: round 2 continues round 1."""
    from oodida_cloud.iteration import combine
    from oodida_core.protocol.wire import OnboardResult

    spec = validate_spec({**FEDERATED, "offboard": "fedadam"})
    assert isinstance(spec, AssignmentSpec)

    def answers(index: int, weights: dict[int, list[float]]) -> list[OnboardResult]:
        return [
            OnboardResult(
                assignment_id="a",
                iteration=index,
                client_id=c,
                status="ok",
                value=model(w),
                started_at=0.0,
                finished_at=1.0,
            )
            for c, w in weights.items()
        ]

    first = combine(spec, "a", 0, [1, 2], answers(0, {1: [1.0, 0.0, 2.0], 2: [3.0, 1.0, 0.0]}), 0.0, 1.0)
    assert first.value["server"]["round"] == 1
    later = {1: [2.0, 1.0, 1.0], 2: [1.0, 1.0, 3.0]}
    second = combine(spec, "a", 1, [1, 2], answers(1, later), 1.0, 2.0, previous_value=first.value)
    assert second.value["server"]["round"] == 2
    params = {"eta": 0.1, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-9}
    assert second.value == aggregate("fedadam", "train", second.onboard, params, first.value)
    assert second.value != aggregate("fedadam", "train", second.onboard, params, None)
