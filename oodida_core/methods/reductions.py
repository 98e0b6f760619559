"""The scalar reductions: one number per signal on board, element-wise over clients off board.

One table, one row per statistic; `average` (alias `mean`), `min`, `max`, `median` and `sum`
exist on both sides, `std`, `variance` and `count` on board only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import HISTOGRAM, NUMBERS, Item, OffboardMethod, OnboardMethod, OnboardParams
from oodida_core.methods.combine import Reducer, reduce_values
from oodida_core.methods.readings import reduction

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["OFFBOARD", "ONBOARD", "SCALAR_METHODS"]


def _numpy(name: str, **kw: Any) -> Callable[..., Any]:
    """numpy's `name`, looked up when first called (see base: numpy is not loaded to check a spec)."""

    def run(x: FloatArray, *_: object) -> Any:
        import numpy as np

        return getattr(np, name)(x, **kw)

    return run


def _count(x: FloatArray, signal: str, params: OnboardParams) -> object:
    import numpy as np

    return int(np.count_nonzero(np.isfinite(x)))


# name, numpy function, aliases, on board: empty readings allowed, off board: exact on ints
_TABLE: tuple[tuple[str, str, tuple[str, ...], bool, Callable[[tuple[int, ...]], int] | None], ...] = (
    ("average", "mean", ("mean",), False, None),
    ("min", "min", (), False, min),
    ("max", "max", (), False, max),
    ("median", "median", (), False, None),
    ("sum", "sum", (), True, sum),
    ("std", "std", (), False, None),
    ("variance", "var", (), False, None),
)
_OFFBOARD_NAMES = ("average", "min", "max", "median", "sum")

ONBOARD: tuple[OnboardMethod, ...] = (
    *(
        OnboardMethod(
            name,
            f"the {name} of each signal's readings (numpy.{fn})",
            NUMBERS,
            aliases=aliases,
            per_signal=reduction(_numpy(fn), name, empty_ok=empty_ok),
        )
        for name, fn, aliases, empty_ok, _ in _TABLE
    ),
    OnboardMethod("count", "the number of finite readings of each signal", NUMBERS, per_signal=_count),
)
SCALAR_METHODS = tuple(m.name for m in ONBOARD)


def _offboard(name: str, fn: str, ints: Callable[[tuple[int, ...]], int] | None) -> Callable[..., object]:
    op = Reducer(name, _numpy(fn, axis=0), ints, histograms=name == "sum")

    def combine(items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any]) -> object:
        return reduce_values(op, items, onboard)

    return combine


OFFBOARD: tuple[OffboardMethod, ...] = tuple(
    OffboardMethod(
        name,
        f"the {name} over clients, element-wise (numpy.{fn} on axis 0)"
        + ("; histograms are added bin by bin" if name == "sum" else ""),
        (NUMBERS, HISTOGRAM) if name == "sum" else (NUMBERS,),
        modes=("measurement", "monitoring"),
        aliases=aliases,
        combine=_offboard(name, fn, ints),
    )
    for name, fn, aliases, _, ints in _TABLE
    if name in _OFFBOARD_NAMES
)
