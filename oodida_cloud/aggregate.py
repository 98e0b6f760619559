"""The built-in off-board methods, run through the method registry: combine the kept on-board
values of one iteration.

`aggregate` is pure and returns plain JSON-compatible Python, taking clients in ascending id
order whatever order the mapping was built in. What it cannot combine raises `AggregationError`
saying which clients sent what, and what would work instead. The methods themselves live in
`oodida_core.methods`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from oodida_core.methods import AggregationError, OffboardMethod, registry
from oodida_core.methods.combine import clients

__all__ = [
    "OFFBOARD_BUILTINS",
    "AggregationError",
    "aggregate",
    "needs_previous",
    "normalise_offboard",
    "offboard_builtins",
]


def offboard_builtins() -> tuple[str, ...]:
    """The off-board methods that run here (not 'custom'), as registered now."""
    return tuple(n for n, m in registry.OFFBOARD.items() if m.runs_here)


OFFBOARD_BUILTINS: tuple[str, ...] = offboard_builtins()
"""`offboard_builtins()` when this module was imported."""


def _offboard(offboard: str) -> OffboardMethod:
    try:
        method = registry.offboard_method(offboard)
    except registry.UnknownMethod:
        aliases = ", ".join(
            f"{a!r} is an alias of {n!r}" for a, n in registry.aliases(registry.OFFBOARD).items()
        )
        raise AggregationError(
            f"unknown off-board method {offboard!r}; the built-in ones are "
            f"{', '.join(offboard_builtins())} ({aliases}), or 'custom' for a deployed module"
        ) from None
    if not method.runs_here:
        raise AggregationError(method.elsewhere or f"{method.name!r} has no off-board function")
    return method


def needs_previous(offboard: str) -> bool:
    """Whether a built-in off-board method reads the previous iteration's value (a server
    optimiser: the model the clients trained from, and its state)."""
    method = registry.OFFBOARD.get(registry.resolve(offboard))
    return method is not None and method.combine_from is not None


def normalise_offboard(offboard: str) -> str:
    """The canonical name of a built-in off-board method; AggregationError if there is none."""
    return _offboard(offboard).name


def aggregate(
    offboard: str,
    onboard: str,
    values: Mapping[int, object],
    parameters: Mapping[str, Any] | None = None,
    previous: object = None,
) -> object:
    """Combine the kept on-board values ({client id: value}) with a built-in off-board method.

    `parameters` holds the method's parameters by spec key (`q` for 'quantile'); a parameter
    not given takes its default. `previous` is the previous iteration's value as the cloud
    stored it (None at the first): the server optimisers (`needs_previous`) read it."""
    method = _offboard(offboard)
    items = sorted(values.items(), key=lambda kv: kv[0])
    on = registry.ONBOARD.get(registry.resolve(onboard))
    result = method.run(items, on, parameters or {}, previous)
    if _has_nonfinite(result):
        bad = [cid for cid, v in items if _has_nonfinite(v)]
        cause = f"{clients(bad)} sent non-finite values" if bad else "a 64-bit float overflowed"
        raise AggregationError(f"the {method.name} of the on-board results is not finite: {cause}")
    return result


def _has_nonfinite(x: object) -> bool:
    if isinstance(x, (float, np.floating)):
        return not math.isfinite(x)
    if isinstance(x, dict):
        return any(_has_nonfinite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        if all(type(v) is float for v in x):  # the common case, made fast
            return not all(map(math.isfinite, x))
        return any(_has_nonfinite(v) for v in x)
    return False
