"""The federated strategies on a live simulated fleet (Redis, a cloud worker, five vehicles).

Each iteration's value is recomputed here from what the vehicles sent and from the previous
iteration's value, with the strategy's own arithmetic (`aggregate`, checked against flwr in
tests/unit/test_strategies_flwr.py): the cloud must have chained the server state from one
iteration to the next, and given every vehicle the previous iteration's model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oodida_cloud.aggregate import aggregate
from oodida_core.methods.base import OnboardParams
from oodida_edge.onboard import run_builtin
from oodida_edge.sources.simulated import SimulatedSensors
from oodida_user import Oodida

SENSORS = SimulatedSensors()
SIGNALS = ["speed", "rpm", "fuel_rate"]
FEDERATED: dict[str, Any] = {
    "name": "strategies",
    "mode": "federated",
    "clients": "all",
    "signals": SIGNALS,
    "onboard": "train",
    "frequency": 10,
    "samples": 400,
}


def readings(cid: int, aid: str, index: int, signals: list[str], samples: int) -> dict[str, Any]:
    return SENSORS.read(cid, aid, index, signals, samples, 10)


def held_out_error(weights: list[float]) -> float:
    """The mean squared error of a fleet model on readings no iteration trained on (scaled as
    `train` scales them)."""
    from oodida_core.protocol.signals import SIGNALS as SCALES

    rows = [SENSORS.read(cid, "held-out", 0, SIGNALS, 2000, 10) for cid in range(1, 6)]
    x = np.concatenate(
        [np.column_stack([np.ones(2000), *(r[s] / SCALES[s].scale for s in SIGNALS[:-1])]) for r in rows]
    )
    y = np.concatenate([r[SIGNALS[-1]] / SCALES[SIGNALS[-1]].scale for r in rows])
    return float(np.mean((x @ np.asarray(weights) - y) ** 2))


def test_fedadam_carries_its_state_and_improves_the_fleet_model(oodida: Oodida) -> None:
    spec = {**FEDERATED, "offboard": "fedadam", "iterations": 3, "eta": 0.05, "proximal_mu": 0.1}
    a = oodida.submit(spec)
    result = a.wait(timeout=90)
    assert result.status == "done", result.error
    its = result.iterations
    assert [it.index for it in its] == [0, 1, 2]
    previous: Any = None
    for it in its:
        assert sorted(it.onboard) == [1, 2, 3, 4, 5]
        for cid in (1, 2, 3):  # every vehicle trained from the previous iteration's value, with FedProx
            data = readings(cid, a.id, it.index, SIGNALS, 400)
            params = OnboardParams("train", tuple(SIGNALS), proximal_mu=0.1)
            expected = run_builtin(params, data, previous)
            assert it.onboard[cid]["weights"] == pytest.approx(expected["weights"], rel=1e-9)  # type: ignore[index]
        parameters = {"eta": 0.05, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-9}
        recomputed = aggregate("fedadam", "train", it.onboard, parameters, previous)
        assert it.value["weights"] == pytest.approx(recomputed["weights"], rel=1e-9)  # type: ignore[index]
        assert it.value["server"]["strategy"] == "fedadam"
        assert it.value["server"]["round"] == it.index + 1  # the state came back from the cloud's store
        previous = it.value
    # the fleet model improves: its error on the same readings falls from round to round
    errors = [held_out_error(w) for w in ([0.0, 0.0, 0.0], *(it.value["weights"] for it in its))]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0], errors
    assert result.value == its[-1].value


MEAN_MODEL = (
    "def custom_code(x):\n"
    "    data = x['data']\n"
    "    start = x['model']['weights'][1] if x['model'] else 0.0\n"
    "    return {'weights': [sum(data) / len(data), start + 1.0], 'n_samples': len(data)}\n"
)
"""Federated custom code on one signal: its input is {"data": list of floats, "model": ...}."""


def test_fedmedian_runs_federated_custom_code_on_a_single_signal(oodida: Oodida, tmp_path: Path) -> None:
    module = tmp_path / "mean_model.py"
    module.write_text(MEAN_MODEL)
    deployed = oodida.deploy_onboard(str(module), clients="all").wait(timeout=60)
    assert sorted(deployed.accepted) == [1, 2, 3, 4, 5]
    spec = {**FEDERATED, "signals": "speed", "onboard": "custom", "offboard": "fedmedian", "iterations": 3}
    a = oodida.submit(spec)
    result = a.wait(timeout=90)
    assert result.status == "done", result.error
    for it in result.iterations:
        means = [
            float(np.mean(readings(cid, a.id, it.index, ["speed"], 400)["speed"])) for cid in range(1, 6)
        ]
        assert [it.onboard[cid]["weights"][0] for cid in range(1, 6)] == pytest.approx(means, rel=1e-9)
        # the median of the vehicles' means; the second weight counts the iterations through the model
        assert it.value["weights"] == pytest.approx([float(np.median(means)), it.index + 1.0], rel=1e-9)
        assert it.value["clients"] == 5 and it.value["n_samples"] == 5 * 400


def test_krum_picks_one_vehicles_model_as_flwr_would(oodida: Oodida, tmp_path: Path) -> None:
    module = tmp_path / "mean_model.py"
    module.write_text(MEAN_MODEL)
    oodida.deploy_onboard(str(module), clients="all").wait(timeout=60)
    spec = {**FEDERATED, "signals": ["speed"], "onboard": "custom", "offboard": "krum", "iterations": 1}
    result = oodida.submit({**spec, "num_malicious_clients": 1}).wait(timeout=90)
    assert result.status == "done", result.error
    (it,) = result.iterations
    (chosen,) = it.value["selected"]
    assert it.value["weights"] == it.onboard[chosen]["weights"]
    recomputed = aggregate(
        "krum", "custom", it.onboard, {"num_malicious_clients": 1, "num_clients_to_keep": 0}
    )
    assert recomputed == it.value
