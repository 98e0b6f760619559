"""The assignment spec: what an analyst may ask for, checked field by field and as a whole.

`validate_spec` is the one entry point. It accepts any object, collects every problem it
finds and raises a single `SpecError` listing them; otherwise it returns a normalised,
frozen `AssignmentSpec` (the analytic modes) or `DeploySpec` (the deploy modes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oodida_core.methods import registry
from oodida_core.methods.base import OffboardMethod, OnboardMethod
from oodida_core.protocol.errors import MISSING, SpecError, SpecIssue
from oodida_core.protocol.signals import SIGNAL_NAMES
from oodida_core.protocol.text import shorten
from oodida_core.spec.experiment import EXPERIMENT_HELP, ExperimentTag
from oodida_core.spec.fields import (
    ALL_KEYS,
    ANALYTIC_KEYS,
    CHECKS,
    CLIENTS_HELP,
    DEPLOY_KEYS,
    DEPLOY_MODES,
    LISTING_1_1,
    MAX_CLIENT_ID,
    METHOD_ALIASES,
    MODES,
    OFFBOARD_FOR_ONBOARD,
    OFFBOARD_METHODS,
    ONBOARD_METHODS,
    REQUIRED_ANALYTIC,
    REQUIRED_DEPLOY,
    WHOLE,
    Bad,
    Clients,
    choice,
    did_you_mean,
    offboard_fits,
    safe,
    show,
    text,
)

__all__ = [
    "ALL_KEYS",
    "LISTING_1_1",
    "MAX_CLIENT_ID",
    "METHOD_ALIASES",
    "MODES",
    "OFFBOARD_FOR_ONBOARD",
    "OFFBOARD_METHODS",
    "ONBOARD_METHODS",
    "AssignmentSpec",
    "DeploySpec",
    "key_label",
    "method_parameters",
    "onboard_parameters",
    "spec_json_schema",
    "spec_to_wire",
    "validate_spec",
]

_PARAMETERS = registry.parameters()


class AssignmentSpec(BaseModel):
    """An analytic assignment in canonical form (lower-case names, aliases resolved)."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Assignment")

    name: str = Field(min_length=1, max_length=200, description="A name for people, 1-200 chars.")
    description: str = Field(default="", max_length=10_000, description="Free text.")
    mode: Literal["measurement", "monitoring", "federated"] = Field(
        description="measurement: collect and aggregate; monitoring: on-board threshold "
        "checks; federated: federated learning (case-insensitive on input)."
    )
    clients: Clients = Field(description=CLIENTS_HELP)
    signals: tuple[str, ...] = Field(
        min_length=1,
        description="Signal names: a built-in short name or its VSS path, or the VSS path of a "
        "signal a vehicle's catalogue offers (a single name is accepted on input). In federated "
        "mode the features come first and the last signal is the target.",
        json_schema_extra={"items": {"type": "string", "examples": list(SIGNAL_NAMES)}},
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
    keep: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Iterations kept one by one (the latest); older ones are folded into a "
        "summary. The operator's OODIDA_MAX_KEPT_ITERATIONS caps it (and applies when absent).",
    )
    timeout: float = Field(
        default=60.0, gt=0, le=86_400, description="Seconds an iteration waits for its clients to answer."
    )
    min_clients: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="An iteration closes as soon as this many selected clients answered (at most "
        "the number selected); the others are late and their answers are kept out of it.",
    )
    buffer: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Federated mode: aggregate asynchronously, every time this many answers arrived "
        "(at most the number selected), and send the new model to those clients only (FedBuff).",
    )
    experiment: ExperimentTag | None = Field(default=None, description=EXPERIMENT_HELP)
    # The method parameters: range and help from the method registry (oodida_core.methods).
    sample_size: int | None = _PARAMETERS["sample_size"].field()
    bins: int | None = _PARAMETERS["bins"].field()
    threshold: float | None = _PARAMETERS["threshold"].field()
    direction: Literal["above", "below"] | None = _PARAMETERS["direction"].field()
    q: float | None = _PARAMETERS["q"].field()
    proximal_mu: float | None = _PARAMETERS["proximal_mu"].field()
    server_learning_rate: float | None = _PARAMETERS["server_learning_rate"].field()
    server_momentum: float | None = _PARAMETERS["server_momentum"].field()
    eta: float | None = _PARAMETERS["eta"].field()
    beta_1: float | None = _PARAMETERS["beta_1"].field()
    beta_2: float | None = _PARAMETERS["beta_2"].field()
    tau: float | None = _PARAMETERS["tau"].field()
    beta: float | None = _PARAMETERS["beta"].field()
    num_malicious_clients: int | None = _PARAMETERS["num_malicious_clients"].field()
    num_clients_to_keep: int | None = _PARAMETERS["num_clients_to_keep"].field()


class DeploySpec(BaseModel):
    """A custom module for the clients (deploy_onboard) or for the cloud (deploy_offboard)."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Deployment")

    mode: Literal["deploy_onboard", "deploy_offboard"] = Field(description="Where the code goes.")
    filename: str = Field(pattern=r".\.py$", description="Path to the Python module (.py).")
    clients: Clients = Field(default="all", description=CLIENTS_HELP + "; deploy_onboard only.")
    name: str = Field(default="", max_length=200, description="An optional name.")
    description: str = Field(default="", max_length=10_000, description="Free text.")


# ---------------------------------------------------------------- the whole spec


class _Checker:
    """Collects the issues of one raw spec and the normalised values of its valid fields."""

    def __init__(self) -> None:
        self.issues: list[SpecIssue] = []
        self.ok: dict[str, Any] = {}

    def fail(self, field: str, value: object, rule: str) -> None:
        self.issues.append(SpecIssue(field, safe(value), rule))

    def check(self, field: str, value: object, check: Callable[[object], object]) -> None:
        try:
            self.ok[field] = check(value)
        except Bad as bad:
            for found, rule in bad.problems:
                self.fail(field, value if found is WHOLE else found, rule)

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
    return shorten(label, 60)


def _is_deploy(data: dict[str, object], mode: str | None) -> bool:
    """Whether the spec has the deploy form (guessed from `filename` when mode is unusable)."""
    return mode in DEPLOY_MODES if mode else "filename" in data


def _check_keys(data: dict[str, object], mode: str | None, c: _Checker) -> tuple[str, ...]:
    deploy = _is_deploy(data, mode)
    allowed = DEPLOY_KEYS if deploy else ANALYTIC_KEYS
    for key, value in data.items():
        if key not in ALL_KEYS:
            hint = did_you_mean(key, allowed) or did_you_mean(key, ALL_KEYS)
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


_FEW = 3
"""A mode or method allowed with at most this many methods names them ("needs ... or ...")."""


def _either(side: str, names: list[str]) -> str:
    return f"{side} " + " or ".join(repr(n) for n in names)


def _check_combinations(c: _Checker, data: dict[str, object]) -> None:
    """The rules that tie fields together, read off the method registry: the modes a method is
    allowed in, which off-board methods fit which on-board output, the parameters each takes,
    requires and defaults, and the mode's own rules."""
    ok = c.ok
    on = registry.ONBOARD.get(ok.get("onboard", ""))
    off = registry.OFFBOARD.get(ok.get("offboard", ""))
    mode = ok.get("mode")
    before = len(c.issues)
    if mode and on is not None and mode not in on.modes:
        allowed = [n for n, m in registry.ONBOARD.items() if mode in m.modes]
        if len(allowed) <= _FEW:
            c.fail("onboard", on.name, f"{mode} mode needs {_either('onboard', allowed)}")
        else:
            c.fail("onboard", on.name, f"{on.name!r} is only allowed in {' or '.join(on.modes)} mode")
    if mode and off is not None and mode not in off.modes:
        allowed = [n for n, m in registry.OFFBOARD.items() if mode in m.modes]
        c.fail("offboard", off.name, f"{mode} mode needs {_either('offboard', allowed)}")
    elif on is not None and off is not None and len(c.issues) == before and not off.fits(on):
        makers = [n for n, m in registry.ONBOARD.items() if off.fits(m)]
        if len(makers) <= _FEW:
            c.fail("offboard", off.name, f"{off.name!r} needs {_either('onboard', makers)}")
        else:
            fits = ", ".join(offboard_fits(on.name)) + ", custom"
            c.fail("offboard", off.name, f"does not fit onboard {on.name!r} (use one of: {fits})")
    if (
        on is not None
        and off is not None
        and mode in on.modes
        and off.name in on.one_iteration_with
        and ok.get("iterations", 1) != 1
    ):
        c.fail("offboard", off.name, on.one_iteration_rule)
    if on is not None and mode in on.modes and "signals" in ok and len(ok["signals"]) < on.least_signals:
        rule = on.least_signals_rule or f"onboard {on.name!r} needs at least {on.least_signals} signals"
        c.fail("signals", data["signals"], rule)
    if on is not None:
        _check_parameters(c, data, on, off)


def _check_parameters(
    c: _Checker, data: dict[str, object], on: OnboardMethod, off: OffboardMethod | None
) -> None:
    """Each parameter only with a method that takes it; required ones given; defaults set."""
    ok = c.ok
    used = [*on.parameters, *(off.parameters if off is not None else ())]
    taken = {p.name for p in used}
    for key in registry.parameters():
        if key in ok and key not in taken:
            owners = [f"onboard {m.name!r}" for m in registry.ONBOARD.values() if key in _keys(m)]
            owners += [f"offboard {m.name!r}" for m in registry.OFFBOARD.values() if key in _keys(m)]
            c.fail(key, data[key], f"only allowed with {' or '.join(owners)}")
    for p in dict.fromkeys(used):  # one q for onboard and offboard quantile
        if p.required and p.name not in data:
            side, method = ("onboard", on.name) if p in on.parameters else ("offboard", off and off.name)
            c.fail(p.name, MISSING, f"required with {side} {method!r}")
        if not all(k in ok for k in p.needs):
            continue
        if p.name in ok and p.bound is not None:
            broken = p.bound(ok[p.name], ok)
            if broken:
                c.fail(p.name, ok[p.name], broken)
        default = p.default_for(ok)
        if default is not None:
            ok.setdefault(p.name, default)


def _keys(method: OnboardMethod | OffboardMethod) -> set[str]:
    return {p.name for p in method.parameters}


def _validate(raw: object) -> AssignmentSpec | DeploySpec:
    c = _Checker()
    data = _read(raw, c)
    if "mode" in data:
        c.check("mode", data["mode"], lambda v: choice(v, MODES, "mode"))
    mode = c.ok.get("mode")
    allowed = _check_keys(data, mode, c)
    deploy = _is_deploy(data, mode)
    checks = {**CHECKS, "name": lambda v: text(v, 0 if deploy else 1, 200)}
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
        raise SpecError([SpecIssue("spec", show(raw), rule)]) from e


def method_parameters(spec: AssignmentSpec) -> dict[str, Any]:
    """The method parameters the spec sets ({key: value}, e.g. {"q": 0.9}), for the methods."""
    values = {key: getattr(spec, key) for key in registry.parameters() if key in AssignmentSpec.model_fields}
    return {key: value for key, value in values.items() if value is not None}


def onboard_parameters(spec: AssignmentSpec) -> dict[str, Any]:
    """The parameters of the spec's on-board method it sets: what an on-board task carries."""
    on = registry.ONBOARD.get(spec.onboard)
    keys = {p.name for p in on.parameters} if on is not None else set()
    return {key: value for key, value in method_parameters(spec).items() if key in keys}


def spec_to_wire(spec: AssignmentSpec | DeploySpec) -> dict[str, Any]:
    """The JSON-compatible form of a spec; validate_spec(spec_to_wire(s)) == s."""
    return spec.model_dump(mode="json")


def spec_json_schema() -> dict[str, Any]:
    """The draft 2020-12 JSON Schema of every spec validate_spec accepts, in every input form
    (built by oodida_core.spec.schema from the same tables; its description names the gaps)."""
    from oodida_core.spec.schema import spec_json_schema as build

    return build()
