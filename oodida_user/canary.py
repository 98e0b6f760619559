"""Canary deployments, orchestrated by the library: deploy a module to a random few of the
selected vehicles, run a guard assignment on them and, at the same time, on the others with
their current code, then promote the module to every selected vehicle or roll the canary
vehicles back to the version each had (the rules: canary_rules.py).

What a rollback restores: the cloud undoes this one deployment on each canary vehicle
(``RollbackRequest.deploy_id``, codestore ``undo_install``): where the vehicle installed it and
it is still current, the head of the user's pointer there is popped, so the vehicle runs the
version it had before, or none if it had none; where the vehicle has not installed it yet
(offline), its pending install is withdrawn, so it never installs it when it comes back. Code
is loaded from Redis for every task, so a vehicle offline during the canary runs the final
outcome's version when it returns: the promotion's install waits on its pending list, or the
rollback already moved its pointer. The library checks the versions afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oodida_core.protocol.errors import CustomCodeError, OodidaError, SpecError, SpecIssue
from oodida_core.spec.model import DeploySpec, validate_spec
from oodida_core.spec.tags import pick, select_tagged

from .canary_rules import (
    CanaryReport,
    Guard,
    GuardObservations,
    Outcome,
    RuleResult,
    canary_size,
    decide,
    pick_canary,
)
from .deploy import DeployReport
from .results import Result

if TYPE_CHECKING:
    from .assignment import Assignment
    from .client import Oodida

UNDO_ATTEMPTS = 5


def resolve_selection(
    o: Oodida, clients: object, filename: str, seed: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the selected vehicles, those of them live now). ``clients``: "all" (every live
    vehicle), a list (exactly those; offline ones are never canaries and get the outcome when
    they come back), k (k live vehicles drawn with ``seed``) or a tag filter (with its k)."""
    parsed = validate_spec({"mode": "deploy_onboard", "filename": filename, "clients": clients})
    assert isinstance(parsed, DeploySpec)
    wanted: Any = parsed.clients
    live = {c.client_id: c for c in o.clients()}
    pool: list[int]
    k: int | None = None
    if wanted == "all":
        pool = sorted(live)
    elif isinstance(wanted, int):
        pool, k = sorted(live), wanted
    elif isinstance(wanted, (tuple, list)):
        chosen = tuple(sorted(set(wanted)))
        return chosen, tuple(c for c in chosen if c in live)
    else:  # a tag filter: the vehicles it chooses now (SpecError when none matches)
        pool = select_tagged(wanted, list(live.values()), str(seed))
    pool = pick(pool, k, seed)
    return tuple(pool), tuple(pool)


class CanaryRun:
    """One canary deployment, step by step (``run``)."""

    def __init__(
        self, o: Oodida, filename: str | os.PathLike[str], guard: Guard, seed: int, deploy_timeout: float
    ) -> None:
        self.o = o
        self.filename = filename
        self.guard = guard
        self.seed = seed
        self.deploy_timeout = deploy_timeout
        self.version = ""
        self.canary: tuple[int, ...] = ()
        self.control: tuple[int, ...] = ()
        self.previous: dict[int, str | None] = {}
        self.reports: dict[str, DeployReport] = {}
        self.assignments: dict[str, str] = {}
        self.deploy_id = ""

    def run(self, clients: object, canary: object) -> CanaryReport:
        selected, live = resolve_selection(self.o, clients, str(self.filename), self.seed)
        size = canary_size(canary, len(live))
        self.canary, others_live = pick_canary(live, size, self.seed)
        self.control = tuple(c for c in selected if c not in self.canary)
        self.previous = dict(self.o.code_versions(list(selected))["onboard"])
        deployment = self.o.deploy_onboard(self.filename, clients=list(self.canary))  # checked here first
        self.version, self.deploy_id = deployment.version, deployment.id
        try:
            first = deployment.wait(timeout=self.deploy_timeout)
        except CustomCodeError as exc:  # the cloud refused the module: it reached no vehicle
            return self._report("rolled_back", (f"the canary deployment failed: {exc}",))
        except OodidaError as exc:  # no cloud worker took it in time: undo whatever it does
            return self._roll_back((f"the canary deployment did not complete: {exc}",))
        self.reports["canary"] = first
        accepted = tuple(sorted(int(c) for c in first.accepted))
        if not accepted:
            why = (
                f"no canary vehicle installed the module (refused: {sorted(first.rejected)}, "
                f"not answered: {list(first.pending)})"
            )
            return self._roll_back((why,), pending=first.pending)
        try:
            obs = self._guard(accepted, tuple(c for c in others_live), first.rejected)
        except OodidaError as exc:  # refused, timed out, broker gone: roll back, say why
            return self._roll_back((f"the guard could not run: {exc}",), pending=first.pending)
        except BaseException:  # interrupted (Ctrl-C): the canary does not keep the new code
            with contextlib.suppress(OodidaError):
                self._roll_back(("interrupted",), pending=first.pending)
            raise
        outcome, rules = decide(obs, self.guard)
        if outcome == "rolled_back":
            return self._roll_back(tuple(str(r) for r in rules if not r.passed), rules, first.pending)
        return self._promote(rules, first.pending)

    # -- the guard -------------------------------------------------------------------------------
    def _specs(self, accepted: tuple[int, ...], others: tuple[int, ...]) -> dict[str, dict[str, Any]]:
        base = dict(self.guard.spec)
        name = str(base.get("name") or "canary guard")
        base.update(iterations=self.guard.iterations, onboard="custom")
        specs = {"canary": {**base, "name": f"{name} (canary)", "clients": list(accepted)}}
        with_code = [c for c in others if self.previous.get(c) is not None]
        without = [c for c in others if self.previous.get(c) is None]
        if with_code:
            specs["others"] = {**base, "name": f"{name} (others)", "clients": with_code}
        if without and self.guard.fallback is not None:
            specs["others (builtin)"] = {
                **base,
                "name": f"{name} (others, {self.guard.fallback})",
                "clients": without,
                "onboard": self.guard.fallback,
            }
        return specs

    def _guard(
        self, accepted: tuple[int, ...], others: tuple[int, ...], rejected: Mapping[int, str]
    ) -> GuardObservations:
        handles: dict[str, Assignment] = {}
        try:
            for role, spec in self._specs(accepted, others).items():  # all at once: same-time
                handles[role] = self.o.submit(spec)
                self.assignments[role] = handles[role].id
            deadline = time.monotonic() + self.guard.timeout
            results = {
                role: a.wait(timeout=max(1.0, deadline - time.monotonic()), progress=False)
                for role, a in handles.items()
            }
        except BaseException:
            for a in handles.values():
                _cancel_quietly(a)
            raise
        return observations(results, {int(c): str(w) for c, w in rejected.items()})

    # -- the outcome -----------------------------------------------------------------------------
    def _promote(self, rules: tuple[RuleResult, ...], pending: Sequence[int]) -> CanaryReport:
        remaining = self.control  # every selected vehicle but the canary, offline ones too
        reasons = tuple(str(r) for r in rules)
        if remaining:
            try:
                promoted = self.o.deploy_onboard(self.filename, clients=list(remaining)).wait(
                    timeout=self.deploy_timeout
                )
            except OodidaError as exc:
                return self._roll_back((*reasons, f"the promotion failed: {exc}"), rules, pending)
            self.reports["promotion"] = promoted
            pending = (*pending, *promoted.pending)
        return self._report("promoted", reasons, rules, tuple(sorted(set(pending))))

    def _roll_back(
        self, reasons: tuple[str, ...], rules: tuple[RuleResult, ...] = (), pending: Sequence[int] = ()
    ) -> CanaryReport:
        """Undo the canary deployment on every canary vehicle it changed, then check that each
        one is back at its version (a vehicle that installed it while the undo ran is undone
        again)."""
        # A vehicle that already ran this very version has nothing to undo (the deployment
        # left its pointer as it was).
        targets = [c for c in self.canary if self.previous.get(c) != self.version]
        wrong: list[int] = list(targets)
        for _ in range(UNDO_ATTEMPTS):
            if not wrong:
                break
            self.o.rollback_onboard(wrong, deployment=self.deploy_id)
            now = self.o.code_versions(list(self.canary))["onboard"]
            wrong = [c for c in targets if now.get(c) == self.version]
            if wrong:
                time.sleep(0.2)
        now = self.o.code_versions(list(self.canary))["onboard"]
        off = [c for c in self.canary if now.get(c) != self.previous.get(c)]
        extra = tuple(
            f"client {c} is at {now.get(c)} after the rollback, not at {self.previous.get(c)} as before"
            for c in off
        )
        return self._report("rolled_back", (*reasons, *extra), rules, tuple(pending), now)

    def _report(
        self,
        outcome: Outcome,
        reasons: tuple[str, ...],
        rules: tuple[RuleResult, ...] = (),
        pending: tuple[int, ...] = (),
        now: Mapping[int, str | None] | None = None,
    ) -> CanaryReport:
        if now is None:
            selected = sorted({*self.canary, *self.control})
            now = self.o.code_versions(selected)["onboard"] if selected and self.version else {}
        return CanaryReport(
            outcome=outcome,
            version=self.version,
            reasons=reasons,
            canary=self.canary,
            control=self.control,
            seed=self.seed,
            rules=rules,
            guard_assignments=dict(self.assignments),
            deploy_reports=dict(self.reports),
            previous=dict(self.previous),
            now=dict(now),
            pending=pending,
        )


def observations(results: Mapping[str, Result], rejected: dict[int, str]) -> GuardObservations:
    """What the guard's assignments saw: the canary's values, failures and tasks asked for
    (answered or failed; a vehicle that did not answer in time is not counted), the others'
    values, and the assignments that ended other than done."""
    canary_values: dict[int, list[Any]] = {}
    control_values: dict[int, list[Any]] = {}
    failures: dict[int, list[str]] = {}
    asked = 0
    missing: dict[int, int] = {}
    errors: list[str] = []
    for role, result in results.items():
        for it in result.iterations:
            values = canary_values if role == "canary" else control_values
            for cid, value in sorted(it.onboard.items()):
                values.setdefault(cid, []).append(value)
            if role == "canary":
                asked += len(it.onboard) + len(it.failed) + len(it.discarded)
                for cid, error in it.failed.items():
                    failures.setdefault(cid, []).append(str(error))
                for cid in it.missing:
                    missing[cid] = missing.get(cid, 0) + 1
        if role == "canary" and result.status != "done" and not failures:
            errors.append(f"the canary's guard assignment {result.id} ended {result.status}: {result.error}")
    iterations = len(results["canary"].iterations) if "canary" in results else 0
    return GuardObservations(
        canary_values, control_values, failures, rejected, asked, iterations, tuple(errors), missing
    )


def _cancel_quietly(a: Assignment) -> None:
    with contextlib.suppress(OodidaError):
        a.cancel(timeout=10)


def run_canary(
    o: Oodida,
    filename: str | os.PathLike[str],
    clients: object,
    canary: object,
    guard: object,
    seed: int | None = None,
    deploy_timeout: float = 60.0,
) -> CanaryReport:
    """``Oodida.deploy_onboard`` with ``canary``: see the module's docstring."""
    if not isinstance(guard, Guard):
        raise SpecError([SpecIssue("guard", guard, "a canary needs a Guard (oodida_user.Guard)")])
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise SpecError([SpecIssue("seed", seed, "must be a whole number, or None for a random one")])
    chosen = random.SystemRandom().randrange(2**32) if seed is None else seed
    with tempfile.TemporaryDirectory(prefix="oodida-canary-") as tmp:
        module = snapshot(filename, Path(tmp), o.deploy_check.policy.max_source_bytes)
        return CanaryRun(o, module, guard, chosen, deploy_timeout).run(clients, canary)


def snapshot(filename: str | os.PathLike[str], into: Path, limit: int) -> str | os.PathLike[str]:
    """A copy of the module (same file name) in ``into``, so that the promotion deploys the
    very source the canary ran even if the file changes meanwhile; the file itself when it
    cannot be read (the deployment then says why, as any deployment does)."""
    src = Path(filename)
    try:
        with src.open("rb") as fh:
            data = fh.read(limit + 1)
    except (OSError, ValueError):
        return filename
    copy = into / src.name
    copy.write_bytes(data)
    return copy
