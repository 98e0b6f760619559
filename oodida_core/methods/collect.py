"""`collect`: on board, every reading of each signal; off board, every client's value as it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oodida_core.methods.base import ANY, NUMBERS, Item, OffboardMethod, OnboardMethod, OnboardParams
from oodida_core.methods.readings import finite_list

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = ["OFFBOARD", "ONBOARD"]


def _collect(x: FloatArray, signal: str, params: OnboardParams) -> object:
    return finite_list(x, f"signal {signal!r}")


def _keep(items: list[Item], onboard: OnboardMethod | None, parameters: Mapping[str, Any]) -> object:
    return dict(items)


ONBOARD = OnboardMethod("collect", "every reading of each signal", NUMBERS, per_signal=_collect)
OFFBOARD = OffboardMethod("collect", "{client id: value}, in client order", (ANY,), combine=_keep)
