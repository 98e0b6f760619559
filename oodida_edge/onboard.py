"""The built-in on-board methods: pure functions from a client's readings to a JSON value.

`run_builtin(params, data, model)` computes one method over the readings of every requested
signal and returns plain Python data (float, int, list, dict with str keys), ready to be sent
to the cloud. Results are per signal, `{signal: value}`, in the order of `params.signals`;
`train` returns one linear model for all its signals.

Nothing here produces NaN or infinity silently: a result that would not be finite raises
`OnboardError`, as do unknown methods, missing parameters and readings that do not fit.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from oodida_core.errors import OodidaError
from oodida_core.signals import SIGNALS

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "BUILTIN_METHODS",
    "TRAIN_LEARNING_RATE",
    "TRAIN_STEPS",
    "OnboardError",
    "OnboardParams",
    "run_builtin",
]

TRAIN_STEPS = 10
TRAIN_LEARNING_RATE = 0.1


class OnboardError(OodidaError, ValueError):
    """An on-board method cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class OnboardParams:
    """What to compute on board: the method, the signals and the method's parameters."""

    method: str
    signals: tuple[str, ...]
    threshold: float | None = None
    direction: str = "above"
    sample_size: int | None = None
    bins: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        # Accept a single name or any sequence of names; store a tuple (hashable, immutable).
        signals: Any = self.signals
        if isinstance(signals, str):
            object.__setattr__(self, "signals", (signals,))
        elif not isinstance(signals, tuple):
            object.__setattr__(self, "signals", tuple(signals))


# --------------------------------------------------------------------------------------------
# Helpers


def _finite(value: float, what: str) -> float:
    """`value` as a Python float, or OnboardError if it is NaN or infinite."""
    out = float(value)
    if not math.isfinite(out):
        raise OnboardError(
            f"{what} is not finite ({out}); the readings contain NaN or infinite values "
            "or are too large to combine"
        )
    return out


def _finite_list(values: FloatArray, what: str) -> list[float]:
    if not np.isfinite(values).all():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise OnboardError(f"{what} has {bad} reading(s) that are NaN or infinite")
    out: list[float] = values.tolist()
    return out


def _non_empty(x: FloatArray, signal: str, method: str) -> None:
    if x.size == 0:
        raise OnboardError(f"signal {signal!r} has no readings; {method} needs at least one")


def _positive_int(value: object, name: str, method: str) -> int:
    if value is None:
        raise OnboardError(f"on-board method {method!r} needs the parameter {name!r}")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise OnboardError(f"{name} must be a positive integer for {method!r}, got {value!r}")
    return int(value)


def _scale(signal: str, method: str) -> float:
    try:
        return SIGNALS[signal].scale
    except KeyError:
        raise OnboardError(
            f"{method!r} needs a known signal range and scale, but {signal!r} is not one of "
            f"{', '.join(SIGNALS)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Per-signal methods: (readings, signal name, params) -> JSON value

_Stat = Callable[[FloatArray, str, OnboardParams], object]


def _reduction(fn: Callable[[FloatArray], Any], method: str, empty_ok: bool = False) -> _Stat:
    def run(x: FloatArray, signal: str, params: OnboardParams) -> object:
        if not empty_ok:
            _non_empty(x, signal, method)
        return _finite(fn(x), f"the {method} of {signal!r}")

    return run


def _count(x: FloatArray, signal: str, params: OnboardParams) -> object:
    return int(np.count_nonzero(np.isfinite(x)))


def _collect(x: FloatArray, signal: str, params: OnboardParams) -> object:
    return _finite_list(x, f"signal {signal!r}")


def _sample(x: FloatArray, signal: str, params: OnboardParams) -> object:
    size = _positive_int(params.sample_size, "sample_size", "sample")
    if size > x.size:
        raise OnboardError(
            f"sample_size {size} is larger than the {x.size} readings of {signal!r}; "
            f"ask for at most {x.size} (samples are drawn without replacement)"
        )
    rng = np.random.default_rng(params.seed)
    idx = np.sort(rng.choice(x.size, size=size, replace=False))
    return _finite_list(x[idx], f"the sample of {signal!r}")


def _histogram(x: FloatArray, signal: str, params: OnboardParams) -> object:
    bins = _positive_int(params.bins, "bins", "histogram")
    if signal not in SIGNALS:
        _scale(signal, "histogram")  # raises with the list of known signals
    sig = SIGNALS[signal]
    if not np.isfinite(x).all():
        _finite_list(x, f"signal {signal!r}")  # raises, naming how many are bad
    # Readings outside [low, high] count in the first or last bin. The edges are
    # linspace(low, high, bins + 1): the same for every client, so counts add up in the cloud.
    counts, edges = np.histogram(np.clip(x, sig.low, sig.high), bins=bins, range=(sig.low, sig.high))
    return {"edges": edges.tolist(), "counts": [int(c) for c in counts.tolist()]}


def _threshold(x: FloatArray, signal: str, params: OnboardParams) -> object:
    if params.threshold is None:
        raise OnboardError("on-board method 'threshold' needs the parameter 'threshold' (a number)")
    limit = params.threshold
    if isinstance(limit, bool) or not isinstance(limit, (int, float, np.number)):
        raise OnboardError(f"threshold must be a number, got {limit!r}")
    limit = _finite(limit, "the threshold")
    direction = params.direction.lower() if isinstance(params.direction, str) else None
    if direction == "above":
        idx = np.flatnonzero(x > limit)
    elif direction == "below":
        idx = np.flatnonzero(x < limit)
    else:
        raise OnboardError(f"direction must be 'above' or 'below', got {params.direction!r}")
    values = _finite_list(x[idx], f"the readings of {signal!r} past the threshold")
    return [{"index": i, "value": v} for i, v in zip(idx.tolist(), values, strict=True)]


_PER_SIGNAL: dict[str, _Stat] = {
    "average": _reduction(np.mean, "average"),
    "min": _reduction(np.min, "min"),
    "max": _reduction(np.max, "max"),
    "median": _reduction(np.median, "median"),
    "sum": _reduction(np.sum, "sum", empty_ok=True),
    "std": _reduction(np.std, "std"),
    "variance": _reduction(np.var, "variance"),
    "count": _count,
    "collect": _collect,
    "sample": _sample,
    "histogram": _histogram,
    "threshold": _threshold,
}

_ALIASES = {"mean": "average"}

BUILTIN_METHODS: frozenset[str] = frozenset([*_PER_SIGNAL, *_ALIASES, "train"])


# --------------------------------------------------------------------------------------------
# Federated learning: a linear model trained by full-batch gradient descent.


def _initial_weights(model: object | None, k: int, features: Sequence[str], target: str) -> FloatArray:
    expected = (
        f'the model input must be None or a dict {{"weights": [{k + 1} numbers]}} '
        f"(an intercept and one weight per feature: {', '.join(features)})"
    )
    if model is None:
        return np.zeros(k + 1)
    if not isinstance(model, Mapping) or "weights" not in model:
        raise OnboardError(f"{expected}; got {type(model).__name__} {_short(model)}")
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
        raise OnboardError(f"{expected}; the weights contain non-numbers: {_short(weights)}")
    out = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(out).all():
        raise OnboardError(f"{expected}; the weights contain NaN or infinite values")
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _train(params: OnboardParams, columns: list[FloatArray], model: object | None) -> object:
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
    scales = [_scale(s, "train") for s in names]
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
    loss = _finite(float(residual @ residual) / n, "the training loss")
    weights = [_finite(v, "a trained weight") for v in w.tolist()]
    return {
        "features": list(features),
        "target": target,
        "weights": weights,
        "n_samples": int(n),
        "loss": loss,
    }


# --------------------------------------------------------------------------------------------
# Entry point


def _method_name(method: object) -> str:
    if not isinstance(method, str):
        raise OnboardError(f"the on-board method must be a string, got {method!r}")
    name = method.strip().lower()
    name = _ALIASES.get(name, name)
    if name in _PER_SIGNAL or name == "train":
        return name
    if name == "custom":
        raise OnboardError(
            "'custom' is not a built-in method: deploy a module with custom_code(x) and the "
            "client runs that instead"
        )
    known = sorted(BUILTIN_METHODS)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise OnboardError(f"unknown on-board method {method!r}{hint} (built-in methods: {', '.join(known)})")


def _readings(data: Mapping[str, npt.ArrayLike], signal: str) -> FloatArray:
    if signal not in data:
        offered = ", ".join(map(repr, data)) or "none"
        raise OnboardError(f"no readings for signal {signal!r} (readings available: {offered})")
    try:
        x = np.asarray(data[signal], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OnboardError(f"the readings of {signal!r} are not numbers: {exc}") from None
    if x.ndim != 1:
        raise OnboardError(f"the readings of {signal!r} must be one-dimensional, got shape {x.shape}")
    return x


def run_builtin(
    params: OnboardParams,
    data: Mapping[str, npt.ArrayLike],
    model: object | None = None,
) -> object:
    """Run the built-in on-board method `params.method` over `data` ({signal: readings}).

    Returns JSON-compatible data: `{signal: value}` in `params.signals` order, or for `train`
    the updated model `{"features", "target", "weights", "n_samples", "loss"}`. `model` is
    only used by `train`: the previous iteration's model, or None to start from zero weights.
    """
    method = _method_name(params.method)
    if not params.signals:
        raise OnboardError(f"on-board method {method!r} needs at least one signal")
    columns = [_readings(data, s) for s in params.signals]
    if method == "train":
        return _train(params, columns, model)
    stat = _PER_SIGNAL[method]
    return {s: stat(x, s, params) for s, x in zip(params.signals, columns, strict=True)}
