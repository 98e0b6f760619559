"""Canary deployments, the pure part: the guard the analyst writes, the canary's size and
group, the rules that decide between promoting and rolling back, and the report.

Nothing here talks to Redis or the cloud (``canary.py`` does); every function is typed and
checked by tests/unit/test_canary_rules.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from oodida_core.protocol.errors import SpecError, SpecIssue
from oodida_core.protocol.text import printable
from oodida_core.spec.tags import pick

from .deploy import DeployReport

Outcome = Literal["promoted", "rolled_back"]
Metric = str | Callable[[Any], float] | None
CustomRule = Callable[["GuardObservations"], str | None]

GUARD_MODES = ("measurement", "monitoring")
GUARD_JSON_KEYS = (
    "spec",
    "iterations",
    "max_failure_rate",
    "metric",
    "tolerance",
    "rel_tolerance",
    "fallback",
    "timeout",
)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Guard:
    """What the canary must pass before its code reaches every selected vehicle.

    ``spec``: the assignment the guard runs (its ``clients`` and ``iterations`` are set by the
    canary; ``onboard`` must be ``custom``), ``iterations`` of it, within ``timeout`` seconds.
    Rules: ``max_failure_rate`` (failed / asked on the canary vehicles, a vehicle that refused
    the module failing every iteration); ``metric`` (a callable on an on-board value, or the key
    of a dict value such as a signal name, a number value being taken as it is; None: the value
    itself) whose mean on the canary vehicles may differ from its mean on the other vehicles,
    run at the same time with their current code, by at most ``tolerance`` (absolute) or
    ``rel_tolerance`` (relative to the others' mean), passing when within either one given;
    ``rule``: a callable on the GuardObservations returning None (pass) or a reason.
    ``fallback``: the built-in on-board method the other vehicles without any custom code of
    yours run for the comparison (None: they are left out of it).
    """

    spec: Mapping[str, Any]
    iterations: int = 3
    max_failure_rate: float = 0.0
    metric: Metric = None
    tolerance: float | None = None
    rel_tolerance: float | None = None
    rule: CustomRule | None = None
    fallback: str | None = None
    timeout: float = 120.0

    def __post_init__(self) -> None:
        issues = guard_issues(self)
        if issues:
            raise SpecError(issues)

    @property
    def compares(self) -> bool:
        """Whether the metric rule applies (a tolerance is given)."""
        return self.tolerance is not None or self.rel_tolerance is not None

    @classmethod
    def from_json(cls, data: object) -> Guard:
        """A guard from its JSON form (``oodida deploy onboard --guard GUARD.json``): the keys
        of GUARD_JSON_KEYS; ``metric`` is then a key of the on-board values or null."""
        if not isinstance(data, Mapping):
            raise SpecError([SpecIssue("guard", data, "must be a JSON object")])
        unknown = sorted(str(k) for k in data if k not in GUARD_JSON_KEYS)
        if unknown:
            raise SpecError(
                [
                    SpecIssue(f"guard.{k}", data[k], f"unknown key; known: {', '.join(GUARD_JSON_KEYS)}")
                    for k in unknown
                ]
            )
        if "spec" not in data:
            raise SpecError([SpecIssue("guard.spec", None, "required: the assignment the guard runs")])
        if data.get("metric") is not None and not isinstance(data.get("metric"), str):
            raise SpecError(
                [SpecIssue("guard.metric", data["metric"], "must be a key of the on-board values, or null")]
            )
        return cls(**{str(k): v for k, v in data.items()})


def guard_issues(guard: Guard) -> list[SpecIssue]:
    """Everything wrong with a guard ([] when it is good); the spec itself is checked again
    when the guard's assignments are submitted."""
    issues: list[SpecIssue] = []
    spec = guard.spec
    if not isinstance(spec, Mapping):
        issues.append(SpecIssue("guard.spec", spec, "must be an assignment spec (a mapping)"))
    else:
        mode = str(spec.get("mode", "")).lower()
        if mode not in GUARD_MODES:
            issues.append(
                SpecIssue("guard.spec.mode", spec.get("mode"), f"must be one of {', '.join(GUARD_MODES)}")
            )
        if str(spec.get("onboard", "custom")).lower() != "custom":
            issues.append(
                SpecIssue(
                    "guard.spec.onboard", spec.get("onboard"), "must be 'custom': the guard runs the new code"
                )
            )
    it = guard.iterations
    if isinstance(it, bool) or not isinstance(it, int) or not 1 <= it <= 1000:
        issues.append(SpecIssue("guard.iterations", it, "must be a whole number from 1 to 1000"))
    if not _number(guard.max_failure_rate) or not 0 <= guard.max_failure_rate <= 1:
        issues.append(
            SpecIssue("guard.max_failure_rate", guard.max_failure_rate, "must be a number from 0 to 1")
        )
    for name in ("tolerance", "rel_tolerance"):
        value = getattr(guard, name)
        if value is not None and (not _number(value) or value < 0):
            issues.append(SpecIssue(f"guard.{name}", value, "must be a finite number >= 0, or None"))
    metric = guard.metric
    if metric is not None and not (isinstance(metric, str) and metric) and not callable(metric):
        issues.append(
            SpecIssue(
                "guard.metric",
                metric,
                "must be a callable on an on-board value, a key (a signal name), or None",
            )
        )
    if metric is not None and not guard.compares:
        issues.append(
            SpecIssue("guard.metric", metric, "needs a tolerance or a rel_tolerance to compare it by")
        )
    if guard.rule is not None and not callable(guard.rule):
        issues.append(SpecIssue("guard.rule", guard.rule, "must be a callable taking the observations"))
    fb = guard.fallback
    if fb is not None and (not isinstance(fb, str) or not fb or fb.lower() == "custom"):
        issues.append(
            SpecIssue("guard.fallback", fb, "must be the name of a built-in on-board method, or None")
        )
    if not _number(guard.timeout) or not 0 < guard.timeout <= 86_400:
        issues.append(
            SpecIssue("guard.timeout", guard.timeout, "must be seconds, more than 0 and at most 86400")
        )
    return issues


# -- the canary group -------------------------------------------------------------------------
def canary_size(canary: object, n: int) -> int:
    """How many of ``n`` live selected vehicles form the canary. ``canary``: a fraction
    0 < canary < 1 (ceil(canary * n), at least 1) or a whole number of vehicles >= 1; either
    way fewer than ``n``, so that some vehicles keep the current version to compare with."""
    if n < 2:
        raise SpecError(
            [SpecIssue("clients", n, "a canary needs at least 2 live selected vehicles (canary and others)")]
        )
    if isinstance(canary, bool) or not isinstance(canary, (int, float)) or not math.isfinite(canary):
        raise SpecError(
            [SpecIssue("canary", canary, "must be a fraction 0 < canary < 1 or a whole number of vehicles")]
        )
    if isinstance(canary, float):
        if not 0 < canary < 1:
            raise SpecError(
                [
                    SpecIssue(
                        "canary", canary, "a fraction must be more than 0 and less than 1 (a count: an int)"
                    )
                ]
            )
        return min(max(1, math.ceil(canary * n - 1e-9)), n - 1)
    if not 1 <= canary < n:
        raise SpecError(
            [
                SpecIssue(
                    "canary",
                    canary,
                    f"a count must be from 1 to {n - 1} (fewer than the {n} live selected vehicles)",
                )
            ]
        )
    return canary


def pick_canary(selected: Sequence[int], size: int, seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(canary, the others): ``size`` of ``selected`` at random, reproducibly from ``seed``."""
    pool = sorted(set(selected))
    chosen = pick(pool, size, seed)
    return tuple(chosen), tuple(sorted(set(pool) - set(chosen)))


# -- what the guard saw -----------------------------------------------------------------------
@dataclass(frozen=True)
class GuardObservations:
    """The guard's iterations: on-board values per vehicle (in iteration order) of the canary
    vehicles (new code) and of the others (current code), the canary's failures per vehicle,
    the canary vehicles that refused the module, and how many canary tasks were asked for."""

    canary_values: dict[int, list[Any]]
    control_values: dict[int, list[Any]]
    failures: dict[int, list[str]] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    asked: int = 0
    iterations: int = 0
    errors: tuple[str, ...] = ()  # the guard's assignments that ended failed, and why
    missing: dict[int, int] = field(default_factory=dict)  # canary vehicle -> tasks unanswered

    @property
    def failed(self) -> int:
        return sum(len(v) for v in self.failures.values()) + len(self.rejected) * max(1, self.iterations)

    @property
    def asked_total(self) -> int:
        return self.asked + len(self.rejected) * max(1, self.iterations)

    @property
    def failure_rate(self) -> float:
        return self.failed / self.asked_total if self.asked_total else 1.0


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {'pass' if self.passed else 'FAIL'}: {self.detail}"


def failure_rule(obs: GuardObservations, max_rate: float) -> RuleResult:
    """The canary's failure rate (failed / asked) at most ``max_rate``; nothing asked fails."""
    if obs.asked_total == 0:
        return RuleResult("failure rate", False, "no canary task was asked for: nothing to judge")
    rate = obs.failure_rate
    detail = f"{obs.failed}/{obs.asked_total} = {rate:.3f} (max {max_rate:.3f})"
    worst = sorted(obs.failures.items(), key=lambda kv: -len(kv[1]))[:3]
    for cid, errors in worst:
        detail += f"; client {cid}: {len(errors)} failed, e.g. {printable(errors[0])[:120]}"
    for cid, why in sorted(obs.rejected.items())[:3]:
        detail += f"; client {cid} refused the module: {printable(why)[:120]}"
    if obs.missing:
        detail += f"; not counted, no answer in time: {dict(sorted(obs.missing.items()))}"
    return RuleResult("failure rate", rate <= max_rate, detail)


def metric_values(values: Mapping[int, Sequence[Any]], metric: Metric) -> list[float]:
    """The metric of every on-board value; ValueError naming the vehicle when it cannot be
    computed or is not a finite number."""
    out: list[float] = []
    for cid, seq in sorted(values.items()):
        for value in seq:
            try:
                if metric is None:
                    got: Any = value
                elif isinstance(metric, str):  # a dict value's key; a number is taken as it is
                    got = value.get(metric) if isinstance(value, Mapping) else value
                    if got is None:
                        raise ValueError(f"the value has no key {metric!r}")
                else:
                    got = metric(value)
                number = float(got)
            except Exception as exc:  # the analyst's callable or a value of another shape
                raise ValueError(f"client {cid}: {type(exc).__name__}: {exc}"[:300]) from None
            if not math.isfinite(number) or isinstance(got, bool):
                raise ValueError(f"client {cid}: {got!r:.60} is not a finite number")
            out.append(number)
    return out


def distance_rule(
    canary: Sequence[float], control: Sequence[float], tolerance: float | None, rel_tolerance: float | None
) -> RuleResult:
    """|mean(canary) - mean(control)| within ``tolerance`` or within ``rel_tolerance`` x
    |mean(control)| (either one given suffices); no value on either side fails."""
    if not canary or not control:
        side = "canary" if not canary else "other"
        return RuleResult("metric distance", False, f"no value from the {side} vehicles to compare")
    mc, mk = math.fsum(canary) / len(canary), math.fsum(control) / len(control)
    distance = abs(mc - mk)
    bounds = []
    if tolerance is not None:
        bounds.append(("abs", tolerance))
    if rel_tolerance is not None:
        bounds.append(("rel", rel_tolerance * abs(mk)))
    passed = any(distance <= bound for _, bound in bounds)
    limits = " or ".join(f"{bound:.6g} ({kind})" for kind, bound in bounds)
    detail = (
        f"canary mean {mc:.6g} (n={len(canary)}), others' mean {mk:.6g} (n={len(control)}), "
        f"distance {distance:.6g}, allowed {limits}"
    )
    return RuleResult("metric distance", passed, detail)


def metric_rule(obs: GuardObservations, guard: Guard) -> RuleResult:
    try:
        canary = metric_values(obs.canary_values, guard.metric)
        control = metric_values(obs.control_values, guard.metric)
    except ValueError as exc:
        return RuleResult("metric distance", False, f"the metric could not be computed: {exc}")
    return distance_rule(canary, control, guard.tolerance, guard.rel_tolerance)


def custom_rule(obs: GuardObservations, rule: CustomRule) -> RuleResult:
    """The analyst's rule: None passes, a string is the reason it fails; raising fails too."""
    try:
        verdict = rule(obs)
    except Exception as exc:
        return RuleResult("custom rule", False, f"raised {type(exc).__name__}: {exc}"[:300])
    if verdict is None:
        return RuleResult("custom rule", True, "returned None")
    return RuleResult("custom rule", False, str(verdict)[:500])


def decide(obs: GuardObservations, guard: Guard) -> tuple[Outcome, tuple[RuleResult, ...]]:
    """Promote when every rule passes, else roll back; the rules' results, in order."""
    results = [failure_rule(obs, guard.max_failure_rate)]
    results += [RuleResult("guard assignment", False, e) for e in obs.errors]
    if guard.compares:
        results.append(metric_rule(obs, guard))
    if guard.rule is not None:
        results.append(custom_rule(obs, guard.rule))
    outcome: Outcome = "promoted" if all(r.passed for r in results) else "rolled_back"
    return outcome, tuple(results)


# -- the report -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CanaryReport:
    """What a canary deployment did: ``outcome`` ``promoted`` or ``rolled_back``, and why."""

    outcome: Outcome
    version: str
    reasons: tuple[str, ...]
    canary: tuple[int, ...]
    control: tuple[int, ...]
    seed: int
    rules: tuple[RuleResult, ...] = ()
    guard_assignments: dict[str, str] = field(default_factory=dict)
    deploy_reports: dict[str, DeployReport] = field(default_factory=dict)
    previous: dict[int, str | None] = field(default_factory=dict)
    now: dict[int, str | None] = field(default_factory=dict)  # versions read after the outcome
    pending: tuple[int, ...] = ()  # offline: they get the outcome when they come back

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    def __str__(self) -> str:
        head = "PROMOTED to every selected vehicle" if self.promoted else "ROLLED BACK on the canary vehicles"
        lines = [
            f"canary deployment of {self.version[:19]}: {head}",
            f"  canary: {list(self.canary)}; others: {list(self.control)}; seed {self.seed}",
        ]
        lines += [f"  {r}" for r in self.rules]
        if not self.rules:
            lines += [f"  reason: {r}" for r in self.reasons]
        for role, aid in self.guard_assignments.items():
            lines.append(f"  guard assignment ({role}): {aid}")
        for step, rep in self.deploy_reports.items():
            lines.append(f"  deployment ({step}) {rep.id}: accepted by {list(rep.accepted)}")
            lines += [f"    client {c} refused: {why}" for c, why in sorted(rep.rejected.items())]
        if self.pending:
            lines.append(f"  offline now, get the outcome when they come back: {list(self.pending)}")
        return printable("\n".join(lines), newlines=True)
