"""A toy method added through the registry alone: on-board `range`, max - min of each signal.

Used by tests/unit/test_methods*.py (`registered(RANGE)`) and by tests/system/test_methods_end_to_end.py,
whose workers import this module through OODIDA_EXTRA_METHODS=tests.system.toy_methods.
"""

from __future__ import annotations

from typing import Any

from oodida_core.methods.base import NUMBERS, OnboardMethod, OnboardParams
from oodida_core.methods.readings import reduction


def _range(x: Any, params: OnboardParams) -> Any:
    return x.max() - x.min()


RANGE = OnboardMethod(
    "range",
    "max - min of each signal's readings",
    NUMBERS,
    per_signal=reduction(_range, "range"),
)

METHODS = (RANGE,)
