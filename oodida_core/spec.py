"""The assignment spec: what an analyst may ask for, checked field by field and as a whole.

`validate_spec` is the one entry point. It accepts any object, collects every problem it
finds and raises a single `SpecError` listing them; otherwise it returns a normalised,
frozen `AssignmentSpec` (the analytic modes) or `DeploySpec` (the deploy modes).
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .errors import MISSING, SpecError, SpecIssue
from .signals import SIGNAL_NAMES

__all__ = [
    "LISTING_1_1",
    "METHOD_ALIASES",
    "MODES",
    "OFFBOARD_METHODS",
    "ONBOARD_METHODS",
    "AssignmentSpec",
    "DeploySpec",
    "spec_json_schema",
    "spec_to_wire",
    "validate_spec",
]

"""Whether custom code and its deployment are accepted (active-code replacement)."""

ANALYTIC_MODES = ("measurement", "monitoring", "federated")
DEPLOY_MODES = ("deploy_onboard", "deploy_offboard")
MODES: tuple[str, ...] = ANALYTIC_MODES + DEPLOY_MODES
SCALAR_METHODS = ("average", "min", "max", "median", "sum", "std", "variance", "count")
ONBOARD_METHODS: tuple[str, ...] = (
    *SCALAR_METHODS,
    "collect",
    "sample",
    "histogram",
    "threshold",
    "train",
    "custom",
)
OFFBOARD_METHODS: tuple[str, ...] = ("collect", "average", "min", "max", "median", "sum", "fedavg", "custom")
METHOD_ALIASES: dict[str, str] = {"mean": "average"}

_REDUCERS = ("collect", "average", "min", "max", "median", "sum")
OFFBOARD_FOR_ONBOARD: dict[str, tuple[str, ...]] = {
    **{m: _REDUCERS for m in (*SCALAR_METHODS, "collect", "sample")},
    "histogram": ("collect", "sum"),
    "threshold": ("collect",),
    "train": ("fedavg", "collect"),
    "custom": OFFBOARD_METHODS,
}
"""The off-board methods each on-board method's output can feed ('custom' fits all)."""

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
    "timeout",
    "threshold",
    "direction",
    "sample_size",
    "bins",
)
DEPLOY_KEYS = ("mode", "filename", "clients", "name", "description")
ALL_KEYS = (*ANALYTIC_KEYS, "filename")
REQUIRED_ANALYTIC = ("name", "mode", "clients", "signals", "onboard", "frequency", "samples", "iterations")
REQUIRED_DEPLOY = ("mode", "filename")

MAX_CLIENT_ID = 2**63 - 1

ClientId = Annotated[int, Field(gt=0, le=MAX_CLIENT_ID)]
Clients = Union[  # noqa: UP007 - a runtime alias, kept readable
    Literal["all"], Annotated[tuple[ClientId, ...], Field(min_length=1)], ClientId
]
_CLIENTS_HELP = (
    '"all", a non-empty list of distinct client ids, or a positive integer k '
    "(k live clients, or all of them if fewer are live)"
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


class AssignmentSpec(BaseModel):
    """An analytic assignment in canonical form (lower-case names, aliases resolved)."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Assignment")

    name: str = Field(min_length=1, max_length=200, description="A name for people, 1-200 chars.")
    description: str = Field(default="", max_length=10_000, description="Free text.")
    mode: Literal["measurement", "monitoring", "federated"] = Field(
        description="measurement: collect and aggregate; monitoring: on-board threshold "
        "checks; federated: federated learning (case-insensitive on input)."
    )
    clients: Clients = Field(description=_CLIENTS_HELP)
    signals: tuple[str, ...] = Field(
        min_length=1,
        description="Signal names (a single name is accepted on input). In federated mode "
        "the features come first and the last signal is the target.",
        json_schema_extra={"items": {"type": "string", "enum": list(SIGNAL_NAMES)}},
    )
    onboard: str = Field(
        description="The on-board method run on each client ('mean' means 'average').",
        json_schema_extra={"enum": list(ONBOARD_METHODS)},
    )
    offboard: str = Field(
        default="collect",
        description="The off-board method run in the cloud on the kept on-board values.",
        json_schema_extra={"enum": list(OFFBOARD_METHODS)},
    )
    frequency: int = Field(ge=1, le=100, description="Readings per second (Hz).")
    samples: int = Field(ge=1, le=1_000_000, description="Readings per signal per iteration.")
    iterations: int = Field(ge=0, le=1_000_000, description="Iterations; 0 runs until cancelled.")
    timeout: float = Field(
        default=60.0, gt=0, le=86_400, description="Seconds an iteration waits for its clients to answer."
    )
    threshold: float | None = Field(
        default=None, description="The limit of onboard 'threshold' (required there, not allowed elsewhere)."
    )
    direction: Literal["above", "below"] | None = Field(
        default=None, description="Onboard 'threshold' reports readings above (default) or below it."
    )
    sample_size: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Readings kept by onboard 'sample' (default 10)."
    )
    bins: int | None = Field(
        default=None, ge=1, le=1000, description="Bins of onboard 'histogram' (1-1000, default 10)."
    )


class DeploySpec(BaseModel):
    """A custom module for the clients (deploy_onboard) or for the cloud (deploy_offboard)."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Deployment")

    mode: Literal["deploy_onboard", "deploy_offboard"] = Field(description="Where the code goes.")
    filename: str = Field(pattern=r".\.py$", description="Path to the Python module (.py).")
    clients: Clients = Field(default="all", description=_CLIENTS_HELP + "; deploy_onboard only.")
    name: str = Field(default="", max_length=200, description="An optional name.")
    description: str = Field(default="", max_length=10_000, description="Free text.")


# ---------------------------------------------------------------- small checkers


class _Bad(Exception):
    """A field broke a rule; `problems` pairs each offending value (_WHOLE: the field's) with it."""

    def __init__(self, *problems: tuple[object, str]) -> None:
        super().__init__(problems)
        self.problems = problems


_WHOLE = object()


def _bad(rule: str) -> _Bad:
    return _Bad((_WHOLE, rule))


def _show(value: object, limit: int = 40) -> str:
    try:
        text = repr(value)
    except Exception:  # huge ints, runaway nesting, hostile __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _listing(values: Sequence[object], most: int = 5) -> str:
    shown = ", ".join(_show(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


class _Unprintable:
    """Stands in an issue for a value that cannot be printed (an issue must print)."""

    def __init__(self, value: object) -> None:
        self.text = f"<{type(value).__name__} too large or too odd to print>"

    def __repr__(self) -> str:
        return self.text


def _safe(value: object) -> object:
    try:
        repr(value)
    except Exception:  # ints over 4300 digits, runaway nesting, hostile __repr__
        return _Unprintable(value)
    return value


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    if len(word) > 100:
        return ""
    near = difflib.get_close_matches(word.lower(), choices, n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def _integer(value: object, lo: int, hi: int) -> int:
    rule = f"must be an integer from {lo:,} to {hi:,}"
    if isinstance(value, float) and value.is_integer():  # 5.0 -> 5; NaN and inf are not
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(rule)
    if not lo <= value <= hi:
        raise _bad(rule)
    return int(value)


def _number(value: object, rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(rule)
    try:
        number = float(value)
    except OverflowError:
        raise _bad(rule) from None
    if not math.isfinite(number):
        raise _bad(rule)
    return number


def _text(value: object, lo: int, hi: int) -> str:
    rule = f"must be a string of {lo:,} to {hi:,} characters"
    if not isinstance(value, str) or not lo <= len(value) <= hi:
        raise _bad(rule)
    if lo > 0 and not value.strip():
        raise _bad(rule + ", not only blanks")
    return str(value)


def _choice(
    value: object, choices: tuple[str, ...], what: str, aliases: Mapping[str, str] | None = None
) -> str:
    if not isinstance(value, str):
        raise _bad(f"must be a string: one of {', '.join(choices)}")
    word = value.lower()
    word = (aliases or {}).get(word, word)
    if word not in choices:
        hint = _did_you_mean(word, (*choices, *(aliases or {})))
        raise _bad(f"unknown {what}{hint} (one of {', '.join(choices)})")
    return word


def _method(value: object, side: Literal["on-board", "off-board"]) -> str:
    onboard = side == "on-board"
    choices = ONBOARD_METHODS if onboard else OFFBOARD_METHODS
    others = OFFBOARD_METHODS if onboard else ONBOARD_METHODS
    if isinstance(value, str) and value.lower() not in choices and value.lower() in others:
        other = "off-board" if onboard else "on-board"
        raise _bad(f"{value.lower()!r} is an {other} method (one of {', '.join(choices)})")
    method = _choice(value, choices, f"{side} method", METHOD_ALIASES)
    return method


def _clients(value: object) -> str | int | tuple[int, ...]:
    if isinstance(value, str):
        if value.lower() == "all":
            return "all"
        raise _bad(f"must be {_CLIENTS_HELP}")
    if isinstance(value, (list, tuple)):
        if not value:
            raise _bad("must not be an empty list")
        ids: list[int] = []
        bad: list[object] = []
        for entry in value:
            try:
                ids.append(_integer(entry, 1, MAX_CLIENT_ID))
            except _Bad:
                bad.append(entry)
        problems: list[tuple[object, str]] = []
        if bad:
            problems.append((_WHOLE, f"client ids must be positive integers; bad: {_listing(bad)}"))
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        if repeated:
            problems.append((_WHOLE, f"client ids must be distinct; repeated: {_listing(repeated)}"))
        if problems:
            raise _Bad(*problems)
        return tuple(ids)
    try:
        return _integer(value, 1, MAX_CLIENT_ID)
    except _Bad:
        raise _bad(f"must be {_CLIENTS_HELP}") from None


def _signals(value: object) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        raise _bad("must be a signal name or a non-empty list of signal names")
    if len(names) > 100:
        raise _bad("must list at most 100 signals")
    problems: list[tuple[object, str]] = []
    found: list[str] = []
    for entry in names:
        if not isinstance(entry, str):
            problems.append((entry, "signal names must be strings"))
        elif entry.lower() not in SIGNAL_NAMES:
            hint = _did_you_mean(entry, SIGNAL_NAMES) or f" (known: {', '.join(SIGNAL_NAMES)})"
            problems.append((entry, f"unknown signal{hint}"))
        else:
            found.append(entry.lower())
    repeated = sorted(s for s, n in Counter(found).items() if n > 1)
    if repeated:
        problems.append((_WHOLE, f"signals must be distinct; repeated: {', '.join(repeated)}"))
    if problems:
        raise _Bad(*problems)
    return tuple(found)


def _filename(value: object) -> str:
    if not isinstance(value, str) or len(value) > 4096:
        raise _bad("must be the path of a Python module ending in .py")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise _bad("must be the path of a Python module ending in .py, without control characters")
    if not value.endswith(".py") or value.replace("\\", "/").rsplit("/", 1)[-1] == ".py":
        raise _bad("must be the path of a Python module ending in .py")
    return str(value)


def _timeout(value: object) -> float:
    rule = "must be a number of seconds, more than 0 and at most 86,400"
    seconds = _number(value, rule)
    if not 0 < seconds <= 86_400:
        raise _bad(rule)
    return seconds


_CHECKS: dict[str, Callable[[object], object]] = {
    "description": lambda v: _text(v, 0, 10_000),
    "clients": _clients,
    "signals": _signals,
    "onboard": lambda v: _method(v, "on-board"),
    "offboard": lambda v: _method(v, "off-board"),
    "frequency": lambda v: _integer(v, 1, 100),
    "samples": lambda v: _integer(v, 1, 1_000_000),
    "iterations": lambda v: _integer(v, 0, 1_000_000),
    "timeout": _timeout,
    "threshold": lambda v: _number(v, "must be a finite number"),
    "direction": lambda v: _choice(v, ("above", "below"), "direction"),
    "sample_size": lambda v: _integer(v, 1, 1_000_000),
    "bins": lambda v: _integer(v, 1, 1000),
    "filename": _filename,
}


# ---------------------------------------------------------------- the whole spec


class _Checker:
    """Collects the issues of one raw spec and the normalised values of its valid fields."""

    def __init__(self) -> None:
        self.issues: list[SpecIssue] = []
        self.ok: dict[str, Any] = {}

    def fail(self, field: str, value: object, rule: str) -> None:
        self.issues.append(SpecIssue(field, _safe(value), rule))

    def check(self, field: str, value: object, check: Callable[[object], object]) -> None:
        try:
            self.ok[field] = check(value)
        except _Bad as bad:
            for found, rule in bad.problems:
                self.fail(field, value if found is _WHOLE else found, rule)

    def combine(self, fields: tuple[str, ...]) -> bool:
        """Whether a rule about these fields applies: each of them present and valid."""
        return all(f in self.ok for f in fields)


def _read(raw: object, c: _Checker) -> dict[str, object]:
    if not isinstance(raw, Mapping):
        rule = "must be a JSON object (a mapping of keys to values)"
        c.fail("spec", raw, f"{rule}, not {type(raw).__name__}")
        return {}
    data: dict[str, object] = {}
    for key, value in list(raw.items()):
        if isinstance(key, str):
            data[str(key)] = value
        else:
            c.fail("spec", key, "every key must be a string")
    # JSON null for an optional key means "not given" (an unknown key is reported all the same)
    required = (*REQUIRED_ANALYTIC, *REQUIRED_DEPLOY)
    return {k: v for k, v in data.items() if v is not None or k in required or k not in ALL_KEYS}


def key_label(key: str) -> str:
    """How an issue names an unknown key: as written, or quoted and escaped when it holds
    characters that do not print (a key must not add lines to a message); at most 60 long."""
    label = key if key.isprintable() else repr(key)
    return label if len(label) <= 60 else label[:57] + "..."


def _is_deploy(data: dict[str, object], mode: str | None) -> bool:
    """Whether the spec has the deploy form (guessed from `filename` when mode is unusable)."""
    return mode in DEPLOY_MODES if mode else "filename" in data


def _check_keys(data: dict[str, object], mode: str | None, c: _Checker) -> tuple[str, ...]:
    deploy = _is_deploy(data, mode)
    allowed = DEPLOY_KEYS if deploy else ANALYTIC_KEYS
    for key, value in data.items():
        if key not in ALL_KEYS:
            hint = _did_you_mean(key, allowed) or _did_you_mean(key, ALL_KEYS)
            c.fail(key_label(key), value, f"unknown key{hint}")
        elif key == "filename" and not deploy:
            c.fail(key, value, "only allowed in the deploy_onboard and deploy_offboard modes")
        elif key == "clients" and mode == "deploy_offboard":
            if isinstance(value, str) and value.lower() == "all":
                continue  # what the model holds: harmless, and keeps model_dump round-tripping
            c.fail(key, value, "not allowed in deploy_offboard mode (the code runs in the cloud)")
        elif key not in allowed:
            c.fail(key, value, f"not allowed in deploy modes (allowed: {', '.join(DEPLOY_KEYS)})")
    required = REQUIRED_DEPLOY if deploy else REQUIRED_ANALYTIC
    for key in required:
        if key not in data:
            c.fail(key, MISSING, "required")
    return allowed if mode != "deploy_offboard" else tuple(k for k in allowed if k != "clients")


def _check_combinations(c: _Checker, data: dict[str, object]) -> None:
    ok = c.ok
    custom = " or 'custom'"
    before = len(c.issues)
    if c.combine(("mode", "onboard")):
        mode, onboard = ok["mode"], ok["onboard"]
        if mode == "monitoring" and onboard not in ("threshold", "custom"):
            c.fail("onboard", onboard, f"monitoring mode needs onboard 'threshold'{custom}")
        elif mode == "federated" and onboard not in ("train", "custom"):
            c.fail("onboard", onboard, f"federated mode needs onboard 'train'{custom}")
        elif mode != "federated" and onboard == "train":
            c.fail("onboard", onboard, "'train' is only allowed in federated mode")
    federated = c.combine(("mode",)) and ok["mode"] == "federated"
    if federated and "offboard" in ok and ok["offboard"] not in ("fedavg", "collect", "custom"):
        rule = f"federated mode needs offboard 'fedavg' or 'collect'{custom}"
        c.fail("offboard", ok["offboard"], rule)
    elif c.combine(("onboard", "offboard")) and len(c.issues) == before:  # onboard is fine
        onboard, offboard = ok["onboard"], ok["offboard"]
        if offboard == "fedavg" and onboard not in ("train", "custom"):
            c.fail("offboard", offboard, f"'fedavg' needs onboard 'train'{custom}")
        elif offboard != "custom" and offboard not in OFFBOARD_FOR_ONBOARD[onboard]:
            fits = ", ".join(OFFBOARD_FOR_ONBOARD[onboard]) + (", custom" if custom else "")
            c.fail("offboard", offboard, f"does not fit onboard {onboard!r} (use one of: {fits})")
    if (
        federated
        and ok.get("offboard") == "collect"
        and ok.get("onboard") == "train"
        and ok.get("iterations", 1) != 1
    ):
        rule = (
            "collect gives one model per client, which cannot be the next iteration's model: "
            "use fedavg, or iterations 1"
        )
        c.fail("offboard", "collect", rule)
    if federated and "signals" in ok and len(ok["signals"]) < 2:
        rule = "federated mode needs at least 2 signals: the features, then the target"
        c.fail("signals", data["signals"], rule + " (the last listed signal is the target)")
    if "onboard" not in ok:
        return
    onboard = ok["onboard"]
    extras = {"threshold": "threshold", "direction": "threshold", "sample_size": "sample"}
    for key, method in {**extras, "bins": "histogram"}.items():
        if key in ok and onboard != method:
            c.fail(key, data[key], f"only allowed with onboard {method!r}")
    if onboard == "threshold":
        if "threshold" not in data:
            c.fail("threshold", MISSING, "required with onboard 'threshold'")
        ok.setdefault("direction", "above")
    elif onboard == "histogram":
        ok.setdefault("bins", 10)
    elif onboard == "sample" and "samples" in ok:
        if "sample_size" in ok and ok["sample_size"] > ok["samples"]:
            c.fail("sample_size", ok["sample_size"], f"must be at most samples ({ok['samples']:,})")
        ok.setdefault("sample_size", min(10, ok["samples"]))


def _validate(raw: object) -> AssignmentSpec | DeploySpec:
    c = _Checker()
    data = _read(raw, c)
    if "mode" in data:
        c.check("mode", data["mode"], lambda v: _choice(v, MODES, "mode"))
    mode = c.ok.get("mode")
    allowed = _check_keys(data, mode, c)
    deploy = _is_deploy(data, mode)
    checks = {**_CHECKS, "name": lambda v: _text(v, 0 if deploy else 1, 200)}
    for key in allowed:
        if key in data and key != "mode":
            c.check(key, data[key], checks[key])
    if not deploy:
        if "offboard" not in data:
            c.ok["offboard"] = "collect"
        _check_combinations(c, data)
    if c.issues:
        raise SpecError(c.issues)
    model: type[AssignmentSpec | DeploySpec] = DeploySpec if deploy else AssignmentSpec
    return model.model_validate(c.ok)  # cannot fail once the checks above passed


def validate_spec(raw: object) -> AssignmentSpec | DeploySpec:
    """Check a raw assignment (usually parsed JSON) and return it in canonical form.

    Raises SpecError, and nothing else, listing every problem found: its field, value and rule.
    A spec object is returned as it is.
    """
    if isinstance(raw, (AssignmentSpec, DeploySpec)):
        return raw
    try:
        return _validate(raw)
    except SpecError:
        raise
    except Exception as e:  # the guarantee: only SpecError leaves this function
        rule = f"could not be checked ({type(e).__name__}); please report this"
        raise SpecError([SpecIssue("spec", _show(raw), rule)]) from e


def spec_to_wire(spec: AssignmentSpec | DeploySpec) -> dict[str, Any]:
    """The JSON-compatible form of a spec; validate_spec(spec_to_wire(s)) == s."""
    return spec.model_dump(mode="json")


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of an assignment: the analytic form or the deploy form."""
    adapter: TypeAdapter[AssignmentSpec | DeploySpec] = TypeAdapter(
        Union[AssignmentSpec, DeploySpec]  # noqa: UP007
    )
    schema = adapter.json_schema()
    return {
        **schema,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "OODIDA assignment",
        "description": (
            "An assignment for the fleet: an analytic task (measurement, monitoring, federated) "
            "or the deployment of a custom module. This is the canonical form; on input, mode "
            "and method names are case-insensitive, 'mean' means 'average', a single signal "
            "name may stand for a list, and integral numbers such as 5.0 count as integers."
        ),
    }
