"""Helpers of the on-board methods: finite results, non-empty readings, positive sizes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import OnboardError, OnboardParams, PerSignal
from oodida_core.protocol.signals import SIGNALS, canonical

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["finite", "finite_list", "non_empty", "positive_int", "reduction", "scale"]


def finite(value: float, what: str) -> float:
    """`value` as a Python float, or OnboardError if it is NaN or infinite."""
    out = float(value)
    if not math.isfinite(out):
        raise OnboardError(
            f"{what} is not finite ({out}); the readings contain NaN or infinite values "
            "or are too large to combine"
        )
    return out


def finite_list(values: FloatArray, what: str) -> list[float]:
    import numpy as np

    if not np.isfinite(values).all():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise OnboardError(f"{what} has {bad} reading(s) that are NaN or infinite")
    out: list[float] = values.tolist()
    return out


def non_empty(x: FloatArray, signal: str, method: str) -> None:
    if x.size == 0:
        raise OnboardError(f"signal {signal!r} has no readings; {method} needs at least one")


def positive_int(value: object, name: str, method: str) -> int:
    import numpy as np

    if value is None:
        raise OnboardError(f"on-board method {method!r} needs the parameter {name!r}")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise OnboardError(f"{name} must be a positive integer for {method!r}, got {value!r}")
    return int(value)


def scale(signal: str, method: str) -> float:
    known = SIGNALS.get(canonical(signal) or "")
    if known is None:
        raise OnboardError(
            f"{method!r} needs a known signal range and scale, but {signal!r} is not one of the "
            f"built-in signals {', '.join(SIGNALS)} (nor their VSS paths)"
        )
    return known.scale


def reduction(
    fn: Callable[[FloatArray, OnboardParams], Any], method: str, empty_ok: bool = False
) -> PerSignal:
    """A per-signal method that reduces the readings to one finite number."""

    def run(x: FloatArray, signal: str, params: OnboardParams) -> object:
        if not empty_ok:
            non_empty(x, signal, method)
        return finite(fn(x, params), f"the {method} of {signal!r}")

    return run
