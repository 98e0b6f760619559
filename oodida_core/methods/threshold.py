"""`threshold`: the readings of each signal above (or below) a limit, as events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oodida_core.methods.base import EVENTS, OnboardError, OnboardMethod, OnboardParams, Parameter
from oodida_core.methods.readings import finite, finite_list

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["ONBOARD"]


def _threshold(x: FloatArray, signal: str, params: OnboardParams) -> object:
    import numpy as np

    if params.threshold is None:
        raise OnboardError("on-board method 'threshold' needs the parameter 'threshold' (a number)")
    limit = params.threshold
    if isinstance(limit, bool) or not isinstance(limit, (int, float, np.number)):
        raise OnboardError(f"threshold must be a number, got {limit!r}")
    limit = finite(limit, "the threshold")
    direction = params.direction.lower() if isinstance(params.direction, str) else None
    if direction == "above":
        idx = np.flatnonzero(x > limit)
    elif direction == "below":
        idx = np.flatnonzero(x < limit)
    else:
        raise OnboardError(f"direction must be 'above' or 'below', got {params.direction!r}")
    values = finite_list(x[idx], f"the readings of {signal!r} past the threshold")
    return [{"index": i, "value": v} for i, v in zip(idx.tolist(), values, strict=True)]


THRESHOLD = Parameter(
    "threshold",
    "number",
    "The limit of onboard 'threshold' (required there, not allowed elsewhere).",
    required=True,
)
DIRECTION = Parameter(
    "direction",
    "choice",
    "Onboard 'threshold' reports readings above (default) or below it.",
    choices=("above", "below"),
    default="above",
)

ONBOARD = OnboardMethod(
    "threshold",
    "the readings past the threshold, as {index, value} events",
    EVENTS,
    modes=("measurement", "monitoring"),
    parameters=(THRESHOLD, DIRECTION),
    per_signal=_threshold,
    no_reduction="on-board 'threshold' results are lists of events that differ from client to "
    "client, so they have no {op}; use offboard 'collect'",
)
