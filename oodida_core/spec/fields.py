"""The spec's vocabulary (modes, methods, keys, limits) and one checker per field.

The method names, aliases, fits and parameter keys are views of the method registry
(`oodida_core.methods`), taken at import; the method checkers read the registry itself.

Each checker takes any object and returns the field's normalised value or raises `Bad`
listing what is wrong; `oodida_core.spec.model` combines them into `validate_spec`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, Literal, Union

from pydantic import Field

from oodida_core.methods import registry
from oodida_core.methods.base import ANALYTIC_MODES
from oodida_core.methods.reductions import SCALAR_METHODS as SCALAR_METHODS  # re-exported
from oodida_core.methods.values import WHOLE as WHOLE  # re-exported, as the checkers below
from oodida_core.methods.values import Bad as Bad
from oodida_core.methods.values import bad as _bad
from oodida_core.methods.values import choice as choice
from oodida_core.methods.values import did_you_mean as did_you_mean
from oodida_core.methods.values import integer as _integer
from oodida_core.methods.values import number as _number
from oodida_core.protocol.signals import SIGNAL_NAMES, canonical, spelt
from oodida_core.protocol.tags import TagFilter
from oodida_core.protocol.text import shorten
from oodida_core.spec.experiment import experiment_tag
from oodida_core.spec.tags import check_clients_filter

MAX_SIGNALS = 100
DEPLOY_MODES = ("deploy_onboard", "deploy_offboard")
MODES: tuple[str, ...] = ANALYTIC_MODES + DEPLOY_MODES

# Views of the method registry (oodida_core.methods), taken when this module is imported.
ONBOARD_METHODS: tuple[str, ...] = tuple(registry.ONBOARD)
OFFBOARD_METHODS: tuple[str, ...] = tuple(registry.OFFBOARD)
METHOD_ALIASES: dict[str, str] = {**registry.aliases(registry.OFFBOARD), **registry.aliases(registry.ONBOARD)}


def offboard_fits(onboard: str) -> tuple[str, ...]:
    """The off-board methods that can combine what `onboard` outputs ('custom' fits all; the
    off-board 'custom' is listed only for the on-board 'custom')."""
    on = registry.ONBOARD[onboard]
    return tuple(
        n for n, off in registry.OFFBOARD.items() if off.fits(on) and (n != "custom" or on.name == n)
    )


OFFBOARD_FOR_ONBOARD: dict[str, tuple[str, ...]] = {m: offboard_fits(m) for m in ONBOARD_METHODS}
"""The off-board methods each on-board method's output can feed ('custom' fits all)."""

PARAMETER_KEYS: tuple[str, ...] = tuple(registry.parameters())
"""The spec keys of method parameters (threshold, bins, q, ...)."""

ANALYTIC_KEYS = (
    "name",
    "description",
    "mode",
    "clients",
    "signals",
    "onboard",
    "offboard",
    "frequency",
    "samples",
    "iterations",
    "keep",
    "timeout",
    "min_clients",
    "buffer",
    "experiment",
    *PARAMETER_KEYS,
)
DEPLOY_KEYS = ("mode", "filename", "clients", "name", "description")
ALL_KEYS = (*ANALYTIC_KEYS, "filename")
REQUIRED_ANALYTIC = ("name", "mode", "clients", "signals", "onboard", "frequency", "samples", "iterations")
REQUIRED_DEPLOY = ("mode", "filename")

MAX_CLIENT_ID = 2**63 - 1

ClientId = Annotated[int, Field(gt=0, le=MAX_CLIENT_ID)]
Clients = Union[  # noqa: UP007 - a runtime alias, kept readable
    Literal["all"], Annotated[tuple[ClientId, ...], Field(min_length=1)], ClientId, TagFilter
]
CLIENTS_HELP = (
    '"all", a non-empty list of distinct client ids, or a positive integer k '
    "(k live clients, or all of them if fewer are live), or a tag filter "
    '{"tags": {key: value or [values]}} with an optional "k": N (the live clients whose tags match, '
    "or N of them)"
)


# The paper's Listing 1.1, verbatim: the example every part of the project starts from.
LISTING_1_1: Mapping[str, object] = MappingProxyType(
    {
        "name": "Measurement Task",
        "description": "Average of velocity",
        "mode": "Measurement",
        "clients": "all",
        "signals": ["speed"],
        "onboard": "average",
        "offboard": "collect",
        "frequency": 1,
        "samples": 1000,
        "iterations": 1,
    }
)


# ---------------------------------------------------------------- small checkers


def show(value: object, limit: int = 40) -> str:
    try:
        text = repr(value)
    except Exception:  # huge ints, runaway nesting, hostile __repr__
        text = f"<{type(value).__name__}>"
    return shorten(text, limit)


def _listing(values: Sequence[object], most: int = 5) -> str:
    shown = ", ".join(show(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


class _Unprintable:
    """Stands in an issue for a value that cannot be printed (an issue must print)."""

    def __init__(self, value: object) -> None:
        self.text = f"<{type(value).__name__} too large or too odd to print>"

    def __repr__(self) -> str:
        return self.text


def safe(value: object) -> object:
    try:
        repr(value)
    except Exception:  # ints over 4300 digits, runaway nesting, hostile __repr__
        return _Unprintable(value)
    return value


def _unicode(value: str, rule: str) -> None:
    """A string that JSON and Redis can carry: no lone surrogates (Python allows them)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(rule + ", valid Unicode (no lone surrogates)") from None


def text(value: object, lo: int, hi: int) -> str:
    rule = f"must be a string of {lo:,} to {hi:,} characters"
    if not isinstance(value, str) or not lo <= len(value) <= hi:
        raise _bad(rule)
    _unicode(value, rule)
    if lo > 0 and not value.strip():
        raise _bad(rule + ", not only blanks")
    return str(value)


def _method(value: object, side: Literal["on-board", "off-board"]) -> str:
    """A method name of one side, read from the registry as it is now (any case, aliases)."""
    onboard = side == "on-board"
    table, other_table = (
        (registry.ONBOARD, registry.OFFBOARD) if onboard else (registry.OFFBOARD, registry.ONBOARD)
    )
    choices, others = tuple(table), tuple(other_table)
    if isinstance(value, str) and value.lower() not in choices and value.lower() in others:
        other = "off-board" if onboard else "on-board"
        raise _bad(f"{value.lower()!r} is an {other} method (one of {', '.join(choices)})")
    return choice(value, choices, f"{side} method", registry.aliases(table))


def _clients(value: object) -> str | int | tuple[int, ...] | TagFilter:
    if isinstance(value, (Mapping, TagFilter)):
        return check_clients_filter(value)  # vehicles chosen by tags (oodida_core.spec.tags)
    if isinstance(value, str):
        if value.lower() == "all":
            return "all"
        raise _bad(f"must be {CLIENTS_HELP}")
    if isinstance(value, (list, tuple)):
        if not value:
            raise _bad("must not be an empty list")
        ids: list[int] = []
        bad: list[object] = []
        for entry in value:
            try:
                ids.append(_integer(entry, 1, MAX_CLIENT_ID))
            except Bad:
                bad.append(entry)
        problems: list[tuple[object, str]] = []
        if bad:
            problems.append((WHOLE, f"client ids must be positive integers; bad: {_listing(bad)}"))
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        if repeated:
            problems.append((WHOLE, f"client ids must be distinct; repeated: {_listing(repeated)}"))
        if problems:
            raise Bad(*problems)
        return tuple(ids)
    try:
        return _integer(value, 1, MAX_CLIENT_ID)
    except Bad:
        raise _bad(f"must be {CLIENTS_HELP}") from None


def _signals(value: object) -> tuple[str, ...]:
    """Built-in signals by short name (any case) or VSS path; any other signal by its VSS path
    (``Vehicle.Branch.Leaf``), which only the vehicles' catalogues can confirm (the cloud checks
    it against the live clients). Each is kept as named; two names of one signal are a repeat."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        raise _bad("must be a signal name or a non-empty list of signal names")
    if len(names) > MAX_SIGNALS:
        raise _bad(f"must list at most {MAX_SIGNALS} signals")
    problems: list[tuple[object, str]] = []
    found: list[str] = []
    ids: list[str] = []
    for entry in names:
        if not isinstance(entry, str):
            problems.append((entry, "signal names must be strings"))
            continue
        sid = canonical(entry)
        if sid is None:
            hint = did_you_mean(entry, SIGNAL_NAMES) or f" (built in: {', '.join(SIGNAL_NAMES)})"
            odd = next(((i, ch) for i, ch in enumerate(entry) if not ch.isascii()), None)
            if odd is not None and len(entry) <= 1024:  # a lookalike or invisible character
                hint = f" (it holds the non-ASCII character U+{ord(odd[1]):04X} at position {odd[0] + 1})"
            problems.append(
                (
                    entry,
                    f"unknown signal{hint}; any other signal is named by its VSS path, Vehicle.Branch.Leaf",
                )
            )
        else:
            found.append(spelt(entry))
            ids.append(sid)
    repeated = sorted(n for n, k in Counter(ids).items() if k > 1)
    if repeated:
        problems.append((WHOLE, f"signals must be distinct; repeated: {', '.join(repeated)}"))
    if problems:
        raise Bad(*problems)
    return tuple(found)


def _filename(value: object) -> str:
    if not isinstance(value, str) or len(value) > 4096:
        raise _bad("must be the path of a Python module ending in .py")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise _bad("must be the path of a Python module ending in .py, without control characters")
    _unicode(value, "must be the path of a Python module ending in .py")
    if not value.endswith(".py") or value.replace("\\", "/").rsplit("/", 1)[-1] == ".py":
        raise _bad("must be the path of a Python module ending in .py")
    return str(value)


def _timeout(value: object) -> float:
    rule = "must be a number of seconds, more than 0 and at most 86,400"
    seconds = _number(value, rule)
    if not 0 < seconds <= 86_400:
        raise _bad(rule)
    return seconds


CHECKS: dict[str, Callable[[object], object]] = {
    "description": lambda v: text(v, 0, 10_000),
    "clients": _clients,
    "signals": _signals,
    "onboard": lambda v: _method(v, "on-board"),
    "offboard": lambda v: _method(v, "off-board"),
    "frequency": lambda v: _integer(v, 1, 100),
    "samples": lambda v: _integer(v, 1, 1_000_000),
    "iterations": lambda v: _integer(v, 0, 1_000_000),
    "keep": lambda v: _integer(v, 1, 1_000_000),
    "timeout": _timeout,
    "min_clients": lambda v: _integer(v, 1, 1_000_000),
    "buffer": lambda v: _integer(v, 1, 1_000_000),
    "experiment": experiment_tag,
    **{key: p.check for key, p in registry.parameters().items()},
    "filename": _filename,
}
