"""The one registry of methods: every on-board and off-board method by name.

Read by the spec check (`oodida_core.spec.model`), the JSON Schema, the edge (`oodida_edge.onboard`)
and the cloud (`oodida_cloud.aggregate`). The built-ins are registered here, in the order the
spec lists them ('custom' always last). More methods come from:
- `register(method, ...)` (or `registered(...)`, which removes them again on leaving), in one
  process;
- the environment variable `OODIDA_EXTRA_METHODS`: comma-separated module names, imported when
  this module is; each module's `METHODS` (a sequence of method objects) is registered. Every
  process of a system that reads the same environment (`oodida up` passes it on to its
  workers) then knows the same methods: the analyst's library, the cloud and the edges.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

from oodida_core.methods import (
    collect,
    custom,
    federated,
    histogram,
    quantile,
    reductions,
    sample,
    server_opt,
    strategies,
    threshold,
)
from oodida_core.methods.base import OffboardMethod, OnboardMethod, Parameter
from oodida_core.protocol.errors import OodidaError

__all__ = [
    "EXTRA_METHODS_ENV",
    "OFFBOARD",
    "ONBOARD",
    "UnknownMethod",
    "aliases",
    "offboard_method",
    "onboard_method",
    "parameters",
    "register",
    "registered",
    "resolve",
    "unregister",
]

EXTRA_METHODS_ENV = "OODIDA_EXTRA_METHODS"

Method = OnboardMethod | OffboardMethod

_ONBOARD: dict[str, OnboardMethod] = {}
_OFFBOARD: dict[str, OffboardMethod] = {}
ONBOARD: Mapping[str, OnboardMethod] = MappingProxyType(_ONBOARD)
"""The on-board methods by name, in the spec's order ('custom' last)."""
OFFBOARD: Mapping[str, OffboardMethod] = MappingProxyType(_OFFBOARD)
"""The off-board methods by name, in the spec's order ('custom' last)."""
_ALIASES: dict[str, str] = {}  # {alias: name}, both sides, kept by register and unregister


class UnknownMethod(OodidaError, LookupError):
    """No method of that name (or alias) on that side."""


def _side(method: Method) -> dict[str, OnboardMethod] | dict[str, OffboardMethod]:
    return _ONBOARD if isinstance(method, OnboardMethod) else _OFFBOARD


def register(*methods: Method) -> None:
    """Add methods; a name or alias taken by another method on the same side is refused."""
    for method in methods:
        table = _side(method)
        if table.get(method.name) is method:
            continue
        taken = {*table, *(a for m in table.values() for a in m.aliases)}
        clash = {method.name, *method.aliases} & taken
        if clash:
            raise ValueError(f"method names already taken: {', '.join(sorted(clash))}")
        for p in method.parameters:
            known = parameters().get(p.name)
            if known is not None and known != p:
                raise ValueError(f"parameter {p.name!r} is already declared differently")
        table[method.name] = method  # type: ignore[assignment]  # the side matches the type
        if "custom" in table:  # custom code stays last: the spec lists it last
            table["custom"] = table.pop("custom")  # type: ignore[assignment]
    _index_aliases()


def unregister(*methods: Method) -> None:
    for method in methods:
        table = _side(method)
        if table.get(method.name) is method:
            del table[method.name]
    _index_aliases()


def _index_aliases() -> None:
    _ALIASES.clear()
    _ALIASES.update({**aliases(_OFFBOARD), **aliases(_ONBOARD)})


@contextmanager
def registered(*methods: Method) -> Iterator[None]:
    """The methods are registered inside the block only."""
    register(*methods)
    try:
        yield
    finally:
        unregister(*methods)


def aliases(table: Mapping[str, Method]) -> dict[str, str]:
    """{alias: name} of one side."""
    return {a: m.name for m in table.values() for a in m.aliases}


def resolve(name: str) -> str:
    """The canonical name of a method as written (any case, blanks around, an alias)."""
    word = name.strip().lower()
    return _ALIASES.get(word, word)


def onboard_method(name: str) -> OnboardMethod:
    try:
        return _ONBOARD[resolve(name)]
    except KeyError:
        raise UnknownMethod(f"unknown on-board method {name!r}") from None


def offboard_method(name: str) -> OffboardMethod:
    try:
        return _OFFBOARD[resolve(name)]
    except KeyError:
        raise UnknownMethod(f"unknown off-board method {name!r}") from None


def parameters() -> dict[str, Parameter]:
    """Every method parameter by name (one declaration per name, whichever side uses it)."""
    found: dict[str, Parameter] = {}
    every: list[Method] = [*_ONBOARD.values(), *_OFFBOARD.values()]
    for m in every:
        for p in m.parameters:
            found.setdefault(p.name, p)
    return found


def _builtins() -> Iterable[Method]:
    yield from reductions.ONBOARD
    yield from (collect.ONBOARD, sample.ONBOARD, histogram.ONBOARD, threshold.ONBOARD)
    yield from (federated.ONBOARD, quantile.ONBOARD, custom.ONBOARD)
    yield from (collect.OFFBOARD, *reductions.OFFBOARD, quantile.OFFBOARD, federated.OFFBOARD)
    yield from (*server_opt.OFFBOARD, *strategies.OFFBOARD)
    yield custom.OFFBOARD


def _extras(names: str) -> Iterable[Method]:
    for module in filter(None, (n.strip() for n in names.split(","))):
        yield from importlib.import_module(module).METHODS


register(*_builtins())
register(*_extras(os.environ.get(EXTRA_METHODS_ENV, "")))
