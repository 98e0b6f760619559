"""Server optimisers, as flwr defines them (flwr.server.strategy): `fedavgm` (FedAvgM, server
momentum), `fedadam` (FedAdam) and `fedyogi` (FedYogi), after Reddi et al., "Adaptive Federated
Optimization" (2020).

Each starts from the clients' FedAvg (the n_samples-weighted average) and moves the global
model x, the model the clients trained from, along the pseudo-gradient avg - x. x is the
previous iteration's value as the cloud stored it (the contract: the value of iteration i is
the model input of iteration i+1), never what a client reports; with no previous value (the
first iteration, or after one that failed) the clients started from None, which `train` reads
as zeros, so x is zeros. The optimiser's state (round, momentum or moments) lives in the value
it returns, under "server": it travels with the model to the next iteration, where `train`
ignores it, and comes back to the strategy from the cloud's store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import MODEL, AggregationError, Item, OffboardMethod, OnboardMethod, Parameter
from oodida_core.methods.combine import short
from oodida_core.methods.models import (
    SERVER_KEY,
    ClientModels,
    client_models,
    model_result,
    parameter,
    weighted_mean,
)

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["ADAM", "AVGM", "OFFBOARD", "YOGI"]

_ADAPTIVE_DEFAULTS = {"fedadam": {"eta": 0.1, "tau": 1e-9}, "fedyogi": {"eta": 0.01, "tau": 1e-3}}
"""flwr's defaults, which differ between FedAdam and FedYogi."""


def _adaptive_default(key: str) -> Any:
    return lambda fields: _ADAPTIVE_DEFAULTS.get(fields.get("offboard", ""), {}).get(key)


SERVER_LEARNING_RATE = Parameter(
    "server_learning_rate",
    "number",
    "offboard 'fedavgm': the server's learning rate, from 0 (excluded) to 10 (default 1). "
    "flwr's FedAvgM(server_learning_rate=...).",
    lo=0,
    hi=10,
    lo_open=True,
    default=1.0,
)
SERVER_MOMENTUM = Parameter(
    "server_momentum",
    "number",
    "offboard 'fedavgm': the server's momentum, from 0 to 1 (excluded; default 0: no momentum). "
    "flwr's FedAvgM(server_momentum=...).",
    lo=0,
    hi=1,
    hi_open=True,
    default=0.0,
)
ETA = Parameter(
    "eta",
    "number",
    "offboard 'fedadam' and 'fedyogi': the server's learning rate, from 0 (excluded) to 10 "
    "(default 0.1 for fedadam, 0.01 for fedyogi, as in flwr).",
    lo=0,
    hi=10,
    lo_open=True,
    default_from=_adaptive_default("eta"),
    needs=("offboard",),
)
BETA_1 = Parameter(
    "beta_1",
    "number",
    "offboard 'fedadam' and 'fedyogi': the decay of the first moment (momentum), from 0 to 1 "
    "(excluded; default 0.9, as in flwr).",
    lo=0,
    hi=1,
    hi_open=True,
    default=0.9,
)
BETA_2 = Parameter(
    "beta_2",
    "number",
    "offboard 'fedadam' and 'fedyogi': the decay of the second moment, from 0 to 1 (excluded; "
    "default 0.99, as in flwr).",
    lo=0,
    hi=1,
    hi_open=True,
    default=0.99,
)
TAU = Parameter(
    "tau",
    "number",
    "offboard 'fedadam' and 'fedyogi': the adaptivity, added to the root of the second moment, "
    "from 0 (excluded) to 1 (default 1e-9 for fedadam, 1e-3 for fedyogi, as in flwr).",
    lo=0,
    hi=1,
    lo_open=True,
    default_from=_adaptive_default("tau"),
    needs=("offboard",),
)


def _start(
    models: ClientModels, previous: object, names: tuple[str, ...]
) -> tuple[FloatArray, int, dict[str, Any]]:
    """x (the model the clients trained from), the last round and the state's arrays by name."""
    import numpy as np

    strategy = models.strategy
    if previous is None:
        return np.zeros(models.shape), 0, {}
    if not isinstance(previous, Mapping) or "weights" not in previous:
        raise AggregationError(
            f"{strategy}: the previous iteration's value is not a model with 'weights' "
            f"({short(previous)}); the server optimiser cannot go on from it"
        )
    try:
        x = np.asarray(previous["weights"], dtype=np.float64)
    except (TypeError, ValueError):
        raise AggregationError(f"{strategy}: the previous model's weights are not numbers") from None
    if x.shape != models.shape:
        raise AggregationError(
            f"{strategy}: the clients sent weights of shape {models.shape}, but the model they "
            f"were sent (the previous iteration's value) has shape {x.shape}; every client must "
            "return weights of the model's shape"
        )
    state = previous.get(SERVER_KEY)
    if not isinstance(state, Mapping) or state.get("strategy") != strategy:
        return x, 0, {}
    arrays = {name: np.asarray(state[name], dtype=np.float64) for name in names if name in state}
    if set(arrays) != set(names) or any(a.shape != x.shape for a in arrays.values()):
        raise AggregationError(f"{strategy}: the previous iteration's server state does not fit its model")
    return x, int(state.get("round", 0)), arrays


def _result(models: ClientModels, x: FloatArray, t: int, state: dict[str, FloatArray]) -> dict[str, Any]:
    loss = None if models.losses is None else float(weighted_mean(models.losses, models.n_samples))
    server = {"strategy": models.strategy, "round": t, **{k: v.tolist() for k, v in state.items()}}
    return model_result(models, x, loss, **{SERVER_KEY: server})


# ---------------------------------------------------------------------------------- FedAvgM


def _avgm(
    items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any], previous: object
) -> object:
    import numpy as np

    lr = parameter("fedavgm", parameters, SERVER_LEARNING_RATE)
    mu = parameter("fedavgm", parameters, SERVER_MOMENTUM)
    models = client_models("fedavgm", items, onboard)
    if models is None:
        return None
    x, t, state = _start(models, previous, ("momentum",))
    with np.errstate(all="ignore"):
        gradient = x - weighted_mean(models.weights, models.n_samples)
        momentum = mu * state["momentum"] + gradient if "momentum" in state else gradient
        x = x - lr * momentum
    return _result(models, x, t + 1, {"momentum": momentum})


AVGM = OffboardMethod(
    "fedavgm",
    "FedAvg with server momentum: x - lr * m, m = momentum * m + (x - the weighted average) (flwr FedAvgM)",
    (MODEL,),
    parameters=(SERVER_LEARNING_RATE, SERVER_MOMENTUM),
    combine_from=_avgm,
)


# ---------------------------------------------------------------------------------- FedAdam, FedYogi


def _adaptive(
    strategy: str,
    items: list[Item],
    onboard: OnboardMethod | None,
    parameters: Mapping[str, Any],
    previous: object,
) -> object:
    import numpy as np

    eta, tau = parameter(strategy, parameters, ETA), parameter(strategy, parameters, TAU)
    b1, b2 = parameter(strategy, parameters, BETA_1), parameter(strategy, parameters, BETA_2)
    models = client_models(strategy, items, onboard)
    if models is None:
        return None
    x, t, state = _start(models, previous, ("m", "v"))
    t += 1
    zeros = np.zeros(models.shape)
    with np.errstate(all="ignore"):
        delta = weighted_mean(models.weights, models.n_samples) - x
        m = b1 * state.get("m", zeros) + (1 - b1) * delta
        v = state.get("v", zeros)
        if strategy == "fedadam":
            v = b2 * v + (1 - b2) * delta * delta
            step = eta * np.sqrt(1 - b2 ** (t + 1.0)) / (1 - b1 ** (t + 1.0))  # flwr's bias correction
        else:
            v = v - (1.0 - b2) * delta * delta * np.sign(v - delta * delta)
            step = eta
        x = x + step * m / (np.sqrt(v) + tau)
    return _result(models, x, t, {"m": m, "v": v})


def _adam(
    items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any], previous: object
) -> object:
    return _adaptive("fedadam", items, onboard, parameters, previous)


def _yogi(
    items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any], previous: object
) -> object:
    return _adaptive("fedyogi", items, onboard, parameters, previous)


ADAM = OffboardMethod(
    "fedadam",
    "FedAvg followed by an Adam step of the server on the pseudo-gradient (flwr FedAdam)",
    (MODEL,),
    parameters=(ETA, BETA_1, BETA_2, TAU),
    combine_from=_adam,
)
YOGI = OffboardMethod(
    "fedyogi",
    "FedAvg followed by a Yogi step of the server on the pseudo-gradient (flwr FedYogi)",
    (MODEL,),
    parameters=(ETA, BETA_1, BETA_2, TAU),
    combine_from=_yogi,
)

OFFBOARD = (AVGM, ADAM, YOGI)
