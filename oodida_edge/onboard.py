"""The built-in on-board methods, run through the method registry: from a client's readings
to a JSON value.

`run_builtin(params, data, model)` computes one method over the readings of every requested
signal and returns plain Python data (float, int, list, dict with str keys), ready to be sent
to the cloud. Results are per signal, `{signal: value}`, in the order of `params.signals`;
`train` returns one linear model for all its signals. The methods themselves (their functions
and parameters) live in `oodida_core.methods`.

Nothing here produces NaN or infinity silently: a result that would not be finite raises
`OnboardError`, as do unknown methods, missing parameters and readings that do not fit.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from oodida_core.methods import OnboardError, OnboardMethod, OnboardParams, registry
from oodida_core.methods.federated import TRAIN_LEARNING_RATE, TRAIN_STEPS

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "BUILTIN_METHODS",
    "TRAIN_LEARNING_RATE",
    "TRAIN_STEPS",
    "OnboardError",
    "OnboardParams",
    "builtin_methods",
    "run_builtin",
]


def builtin_methods() -> frozenset[str]:
    """The names (and aliases) of the on-board methods that run here, as registered now."""
    runs_here = [m for m in registry.ONBOARD.values() if not m.elsewhere]
    return frozenset([*(m.name for m in runs_here), *(a for m in runs_here for a in m.aliases)])


BUILTIN_METHODS: frozenset[str] = builtin_methods()
"""`builtin_methods()` when this module was imported."""


def _method(method: object) -> OnboardMethod:
    if not isinstance(method, str):
        raise OnboardError(f"the on-board method must be a string, got {method!r}")
    try:
        found = registry.onboard_method(method)
    except registry.UnknownMethod:
        known = sorted(builtin_methods())
        close = difflib.get_close_matches(registry.resolve(method), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OnboardError(
            f"unknown on-board method {method!r}{hint} (built-in methods: {', '.join(known)})"
        ) from None
    if found.elsewhere:
        raise OnboardError(found.elsewhere)
    return found


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
    method = _method(params.method)
    if not params.signals:
        raise OnboardError(f"on-board method {method.name!r} needs at least one signal")
    columns = [_readings(data, s) for s in params.signals]
    return method.compute(params, columns, model)
