"""Federated learning: `train` fits a linear model on board (full-batch gradient descent, with
FedProx's proximal term when `proximal_mu` > 0), `fedavg` averages the clients' models off
board, each weighted by its number of samples. The other strategies: `strategies` (robust
aggregation) and `server_opt` (server optimisers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import (
    MODEL,
    Item,
    OffboardMethod,
    OnboardError,
    OnboardMethod,
    OnboardParams,
    Parameter,
)
from oodida_core.methods.models import client_models, model_result, weighted_mean
from oodida_core.methods.readings import finite, scale
from oodida_core.protocol.text import shorten

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["OFFBOARD", "ONBOARD", "PROXIMAL_MU", "TRAIN_LEARNING_RATE", "TRAIN_STEPS"]

TRAIN_STEPS = 10
TRAIN_LEARNING_RATE = 0.1

PROXIMAL_MU = Parameter(
    "proximal_mu",
    "number",
    "FedProx: the weight mu of the proximal term mu/2 * ||w - w_received||^2 that onboard "
    "'train' adds to its loss, pulling the local weights toward the model it received; from 0 "
    "to 10 (default 0: plain training). flwr's FedProx(proximal_mu=...).",
    lo=0,
    hi=10,
    default=0.0,
)


def _initial_weights(model: object | None, k: int, features: Sequence[str], target: str) -> FloatArray:
    import numpy as np

    expected = (
        f'the model input must be None or a dict {{"weights": [{k + 1} numbers]}} '
        f"(an intercept and one weight per feature: {', '.join(features)})"
    )
    if model is None:
        return np.zeros(k + 1)
    if not isinstance(model, Mapping) or "weights" not in model:
        raise OnboardError(f"{expected}; got {type(model).__name__} {shorten(repr(model), 80)}")
    model_features, model_target = model.get("features"), model.get("target")
    if (model_features is not None and list(model_features) != list(features)) or (
        model_target is not None and model_target != target
    ):
        raise OnboardError(
            f"the model was trained on features {model_features} and target {model_target!r} "
            f"but this task uses {list(features)} and {target!r}; use the same signals, in the "
            "same order (the target last)"
        )
    weights = model["weights"]
    if not isinstance(weights, (list, tuple)) or len(weights) != k + 1:
        got = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
        raise OnboardError(f"{expected}; got weights of length/type {got}")
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise OnboardError(f"{expected}; the weights contain non-numbers: {shorten(repr(weights), 80)}")
    out = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(out).all():
        raise OnboardError(f"{expected}; the weights contain NaN or infinite values")
    return out


def _train(params: OnboardParams, columns: list[FloatArray], model: object | None) -> object:
    import numpy as np

    names = params.signals
    mu = float(params.proximal_mu or 0.0)
    if not 0.0 <= mu <= float(PROXIMAL_MU.hi or 0):
        raise OnboardError(f"proximal_mu must be a number from 0 to {PROXIMAL_MU.hi:g}, got {mu!r}")
    if len(names) < 2:
        raise OnboardError(
            "train needs at least two signals: the features, then the target as the last one "
            f"(got {list(names)})"
        )
    features, target = names[:-1], names[-1]
    lengths = {c.size for c in columns}
    if len(lengths) != 1:
        raise OnboardError(
            f"train needs the same number of readings for every signal, got "
            f"{dict(zip(names, (c.size for c in columns), strict=True))}"
        )
    n = lengths.pop()
    if n == 0:
        raise OnboardError("train needs at least one reading per signal, got none")
    k = len(features)
    w = _initial_weights(model, k, features, target)
    received = w.copy()
    scales = [scale(s, "train") for s in names]
    x = np.empty((n, k + 1))
    x[:, 0] = 1.0
    for j in range(k):
        np.divide(columns[j], scales[j], out=x[:, j + 1])
    y = columns[-1] / scales[-1]
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise OnboardError("train got readings that are NaN or infinite")
    # MSE(w) = w'Aw - 2w'b + c, gradient 2(Aw - b): the steps need only A and b. FedProx adds
    # mu/2 ||w - received||^2, gradient mu (w - received); the loss reported is the MSE alone.
    with np.errstate(all="ignore"):  # overflow shows up as a non-finite loss, reported below
        gram = (x.T @ x) / n
        xty = (x.T @ y) / n
        for _ in range(TRAIN_STEPS):
            w = w - TRAIN_LEARNING_RATE * (2.0 * (gram @ w - xty) + mu * (w - received))
        residual = x @ w - y
    loss = finite(float(residual @ residual) / n, "the training loss")
    weights = [finite(v, "a trained weight") for v in w.tolist()]
    return {
        "features": list(features),
        "target": target,
        "weights": weights,
        "n_samples": int(n),
        "loss": loss,
    }


ONBOARD = OnboardMethod(
    "train",
    "a linear model of the last signal on the others, trained from the previous iteration's",
    MODEL,
    modes=("federated",),
    parameters=(PROXIMAL_MU,),
    whole=_train,
    no_reduction="on-board 'train' results are models, not numbers to {op}; "
    "use offboard 'fedavg' to average them, or 'collect'",
    one_iteration_with=("collect",),
    one_iteration_rule="collect gives one model per client, which cannot be the next iteration's "
    "model: use fedavg, or iterations 1",
    least_signals=2,
    least_signals_rule="onboard 'train' needs at least 2 signals: the features, then the target "
    "(the last listed signal is the target)",
)


# ---------------------------------------------------------------------------------- fedavg


def _fedavg(items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any]) -> object:
    """Average the clients' model weights, each client weighted by its number of samples."""
    models = client_models("fedavg", items, onboard)
    if models is None:
        return None
    weights = weighted_mean(models.weights, models.n_samples)
    loss = None if models.losses is None else float(weighted_mean(models.losses, models.n_samples))
    return model_result(models, weights, loss)


OFFBOARD = OffboardMethod(
    "fedavg",
    "the clients' models averaged, each weighted by its n_samples",
    (MODEL,),
    combine=_fedavg,
)
