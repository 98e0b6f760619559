"""Federated learning: `train` fits a linear model on board (full-batch gradient descent),
`fedavg` averages the clients' models off board, each weighted by its number of samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import (
    MODEL,
    AggregationError,
    Item,
    OffboardMethod,
    OnboardError,
    OnboardMethod,
    OnboardParams,
)
from oodida_core.methods.combine import clients, describe, is_int, kind, most, odd_ones, short
from oodida_core.methods.readings import finite, scale
from oodida_core.protocol.text import shorten

if TYPE_CHECKING:
    from collections.abc import Hashable

    import numpy as np

    from oodida_core.methods.base import FloatArray

__all__ = ["OFFBOARD", "ONBOARD", "TRAIN_LEARNING_RATE", "TRAIN_STEPS"]

TRAIN_STEPS = 10
TRAIN_LEARNING_RATE = 0.1


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
    scales = [scale(s, "train") for s in names]
    x = np.empty((n, k + 1))
    x[:, 0] = 1.0
    for j in range(k):
        np.divide(columns[j], scales[j], out=x[:, j + 1])
    y = columns[-1] / scales[-1]
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise OnboardError("train got readings that are NaN or infinite")
    # MSE(w) = w'Aw - 2w'b + c, gradient 2(Aw - b): the steps need only A and b.
    with np.errstate(all="ignore"):  # overflow shows up as a non-finite loss, reported below
        gram = (x.T @ x) / n
        xty = (x.T @ y) / n
        for _ in range(TRAIN_STEPS):
            w = w - TRAIN_LEARNING_RATE * 2.0 * (gram @ w - xty)
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
    whole=_train,
    no_reduction="on-board 'train' results are models, not numbers to {op}; "
    "use offboard 'fedavg' to average them, or 'collect'",
    one_iteration_with=("collect",),
    one_iteration_rule="collect gives one model per client, which cannot be the next iteration's "
    "model: use fedavg, or iterations 1",
)


# ---------------------------------------------------------------------------------- fedavg


def _fedavg(items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any]) -> object:
    """Average the clients' model weights, each client weighted by its number of samples."""
    import numpy as np

    if not items:
        return None
    trained = onboard is not None and onboard.output == MODEL
    used: list[Item] = []
    for cid, v in items:
        if not isinstance(v, dict) or "weights" not in v or "n_samples" not in v:
            raise AggregationError(
                f"fedavg averages models, but client {cid} sent {describe(v)}; use onboard "
                "'train', or custom code that returns a dict with 'weights' (a list of numbers) "
                "and 'n_samples' (the number of samples it trained on)"
            )
        n = v["n_samples"]
        if not is_int(n) or n < 0:
            raise AggregationError(
                f"fedavg: client {cid} reported n_samples {short(n)}; it must be a non-negative integer"
            )
        if n > 0:
            used.append((cid, v))
    if not used:
        raise AggregationError(
            f"fedavg has nothing to average: every client ({clients([c for c, _ in items])}) "
            "reported n_samples 0"
        )
    arrays: dict[int, np.ndarray] = {}
    for cid, v in used:
        try:
            array = np.asarray(v["weights"])
        except (ValueError, TypeError):
            array = np.asarray(None)
        if not isinstance(v["weights"], (list, tuple)) or array.dtype.kind not in "iuf":
            raise AggregationError(
                f"fedavg: client {cid}'s 'weights' must be a list of numbers, got {short(v['weights'])}"
            )
        arrays[cid] = array.astype(np.float64)
    _agree("number of weights", {c: a.shape[0] if a.ndim == 1 else a.shape for c, a in arrays.items()})
    n_arr = np.asarray([v["n_samples"] for _, v in used], dtype=np.float64)
    total = int(sum(int(v["n_samples"]) for _, v in used))
    with np.errstate(all="ignore"):
        weights = np.tensordot(n_arr, np.stack(list(arrays.values())), axes=1) / n_arr.sum()
    result: dict[str, Any]
    if trained:
        feats = _agree("features", {cid: tuple(v.get("features", ())) for cid, v in used})
        target = _agree("target", {cid: v.get("target") for cid, v in used})
        result = {"features": list(feats), "target": target}
    else:
        result = dict(used[0][1])
    result.update(weights=weights.tolist(), n_samples=total)
    losses = [v.get("loss") for _, v in used]
    if all(kind(x) == "number" for x in losses):
        with np.errstate(all="ignore"):
            result["loss"] = float(np.dot(n_arr, np.asarray(losses, dtype=np.float64)) / n_arr.sum())
    elif trained:
        raise AggregationError("fedavg: every 'train' result must report its loss as a number")
    result["clients"] = len(used)
    return result


def _agree(what: str, found: dict[int, Hashable]) -> Any:
    common, odd = odd_ones(found)
    if odd:
        others = ", ".join(f"client {cid} has {short(x)}" for cid, x in odd.items())
        raise AggregationError(
            f"fedavg needs the same {what} on every client: {most(odd, found)} have "
            f"{short(common)}, but {others}"
        )
    return common


OFFBOARD = OffboardMethod(
    "fedavg",
    "the clients' models averaged, each weighted by its n_samples",
    (MODEL,),
    combine=_fedavg,
)
