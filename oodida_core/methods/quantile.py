"""`quantile`: the q-quantile (numpy's linear method) of each signal's readings on board, and
element-wise over the clients' values off board. Both sides read the one spec key `q`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import (
    NUMBERS,
    Item,
    OffboardMethod,
    OnboardError,
    OnboardMethod,
    OnboardParams,
    Parameter,
)
from oodida_core.methods.combine import Reducer, reduce_values
from oodida_core.methods.readings import reduction

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["OFFBOARD", "ONBOARD", "Q"]

Q = Parameter(
    "q",
    "number",
    "The quantile of onboard and/or offboard 'quantile', from 0 to 1 (default 0.5, the "
    "median); one q serves both sides.",
    lo=0,
    hi=1,
    default=0.5,
)


def _q(value: object) -> float:
    """The q to use (the default when none was sent); OnboardError if it is not in [0, 1]."""
    if value is None:
        return float(Q.default)  # type: ignore[arg-type]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or not 0 <= float(value) <= 1:  # type: ignore[arg-type]
        raise OnboardError(f"q must be a number from 0 to 1 for 'quantile', got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _onboard(x: FloatArray, params: OnboardParams) -> Any:
    import numpy as np

    return np.quantile(x, _q(params.q), method="linear")


ONBOARD = OnboardMethod(
    "quantile",
    "the q-quantile of each signal's readings (numpy.quantile, method 'linear')",
    NUMBERS,
    parameters=(Q,),
    per_signal=reduction(_onboard, "quantile"),
)


def _offboard(items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any]) -> object:
    import numpy as np

    q = _q(parameters.get("q"))

    def over_clients(rows: FloatArray) -> FloatArray:
        return np.quantile(rows, q, axis=0, method="linear")

    return reduce_values(Reducer("quantile", over_clients), items, onboard)


OFFBOARD = OffboardMethod(
    "quantile",
    "the q-quantile over clients, element-wise (numpy.quantile on axis 0, method 'linear')",
    (NUMBERS,),
    modes=("measurement", "monitoring"),
    parameters=(Q,),
    combine=_offboard,
)
