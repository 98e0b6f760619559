"""A/B experiments: one assignment per variant, each over its own random group of vehicles.

``o.experiment(spec, variants={"A": "a.py", "B": "builtin"})`` checks the spec and the
variants, picks the selected live vehicles, splits them into disjoint groups at random
(``oodida_user.groups``, seeded, the seed recorded), deploys each custom variant to its group,
and submits one assignment per variant, all running at once. Each assignment's spec carries the
``experiment`` key (id, variant, seed, ...), so ``o.experiment_result(id)`` finds them again
and recomputes the statistics (``oodida_user.experiment_result``). Within one assignment every
result comes from one variant's code: the majority vote over code versions applies within a
variant, never across variants.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oodida_core.methods import registry
from oodida_core.protocol.errors import CustomCodeError, OodidaError, SpecError, SpecIssue, UnknownAssignment
from oodida_core.protocol.tags import TagFilter
from oodida_core.protocol.wire import FINAL_STATUSES, ClientInfo
from oodida_core.spec.model import AssignmentSpec, spec_to_wire, validate_spec
from oodida_core.spec.tags import pick, select_tagged

from .experiment_result import ExperimentResult, Metric, VariantInfo, build_result
from .groups import check_names, check_seed, draw_seed, split_groups
from .stats import Test, check_confidence, check_test

if TYPE_CHECKING:
    from .assignment import Assignment
    from .client import Oodida

BUILTIN = "builtin"
JSON_KEYS = ("variants", "split", "metric", "seed", "test", "confidence")


@dataclass(frozen=True)
class ExperimentPlan:
    """A checked experiment: the spec every variant runs, the variants in order (the first is
    the control) with their module or ``builtin``, the split, the metric, seed and test."""

    spec: AssignmentSpec
    variants: dict[str, Path | None]  # None: the spec's built-in on-board method
    split: dict[str, float] | None
    metric: Metric
    seed: int
    test: Test
    confidence: float

    @property
    def names(self) -> list[str]:
        return list(self.variants)


def from_json(raw: Mapping[str, Any], base: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON form, a spec with an ``experiment`` block of ``variants`` (name: module path or
    "builtin"), ``split``, ``metric`` (a signal name), ``seed``, ``test``, ``confidence``:
    (the spec without the block, the arguments of ``plan_experiment``). Relative module paths
    are read from ``base`` (the JSON file's directory) when given."""
    block = raw.get("experiment")
    if not isinstance(block, Mapping):
        raise SpecError.single("experiment", block, "the JSON form needs an experiment block with variants")
    unknown = [k for k in block if k not in JSON_KEYS]
    if unknown:
        raise SpecError.single("experiment", unknown, f"unknown key(s); allowed: {', '.join(JSON_KEYS)}")
    variants = block.get("variants")
    if isinstance(variants, Mapping) and base is not None:
        variants = {
            k: v if not isinstance(v, str) or v.lower() == BUILTIN or Path(v).is_absolute() else str(base / v)
            for k, v in variants.items()
        }
    spec = {k: v for k, v in raw.items() if k != "experiment"}
    args = {k: block[k] for k in JSON_KEYS if k in block and k != "variants"}
    return spec, {"variants": variants, **args}


def plan_experiment(
    spec: Mapping[str, Any] | AssignmentSpec,
    variants: Mapping[str, str | os.PathLike[str]] | None = None,
    *,
    split: Mapping[str, float] | None = None,
    metric: Metric = None,
    seed: int | None = None,
    test: str = "welch",
    confidence: float = 0.95,
) -> ExperimentPlan:
    """Check everything before anything is sent; SpecError listing each problem. With
    ``variants`` None, ``spec`` is the JSON form (see ``from_json``)."""
    if variants is None and isinstance(spec, Mapping) and isinstance(spec.get("experiment"), Mapping):
        raw, args = from_json(spec)
        return plan_experiment(raw, **args)
    parsed = validate_spec(spec)
    if not isinstance(parsed, AssignmentSpec):
        raise SpecError.single(
            "mode", parsed.mode, "an experiment runs an analytic assignment, not a deployment"
        )
    issues: list[SpecIssue] = []
    if parsed.experiment is not None:
        issues.append(SpecIssue("experiment", "...", "is set by o.experiment itself; leave it out"))
    if parsed.iterations == 0:
        issues.append(SpecIssue("iterations", 0, "an experiment needs a finite number of iterations"))
    if not isinstance(variants, Mapping):
        raise SpecError(
            [
                *issues,
                SpecIssue(
                    "variants", variants, 'must map names to modules, e.g. {"A": "a.py", "B": "builtin"}'
                ),
            ]
        )
    check_names(list(variants))
    chosen: dict[str, Path | None] = {}
    for name, source in variants.items():
        if isinstance(source, str) and source.lower() == BUILTIN:
            if parsed.onboard == "custom":
                rule = (
                    "the spec's onboard is 'custom': a builtin variant needs the spec to name "
                    "a built-in on-board method (e.g. average)"
                )
                issues.append(SpecIssue(f"variants.{name}", source, rule))
            chosen[name] = None
        elif isinstance(source, (str, os.PathLike)) and str(source).endswith(".py"):
            path = Path(source)
            if not path.is_file():
                issues.append(SpecIssue(f"variants.{name}", str(source), "no such module file"))
            chosen[name] = path
        else:
            issues.append(
                SpecIssue(f"variants.{name}", source, "must be the path of a .py module or 'builtin'")
            )
    if metric is not None and not callable(metric) and not isinstance(metric, str):
        issues.append(
            SpecIssue("metric", metric, "must be a signal name, a function of one on-board value, or None")
        )
    for check, value in ((check_test, test), (check_confidence, confidence)):
        try:
            check(value)
        except SpecError as exc:
            issues.extend(exc.issues)
    if seed is not None:
        try:
            check_seed(seed)
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError(issues)
    return ExperimentPlan(
        spec=parsed,
        variants=chosen,
        split=dict(split) if split is not None else None,
        metric=metric,
        seed=draw_seed() if seed is None else int(seed),
        test=check_test(test),
        confidence=check_confidence(confidence),
    )


def select_vehicles(clients: Any, live: Sequence[ClientInfo], seed: int) -> list[int]:
    """The ids the spec's ``clients`` selects among the live vehicles, sorted: "all", a list
    (each must be live), k at random (seeded), or a tag filter (with its k)."""
    live_ids = sorted(c.client_id for c in live)
    if not live_ids:
        raise SpecError.single("clients", clients, "no client is live; start some first")
    if clients == "all":
        return live_ids
    if isinstance(clients, TagFilter):
        return select_tagged(clients, live, str(seed))
    if isinstance(clients, int):
        return pick(live_ids, clients, seed)
    wanted = sorted(set(clients))
    offline = [c for c in wanted if c not in set(live_ids)]
    if offline:
        raise SpecError.single("clients", list(clients), f"clients {offline[:20]} are not live")
    return wanted


def variant_spec(plan: ExperimentPlan, name: str, group: Sequence[int], experiment_id: str) -> dict[str, Any]:
    """The spec of one variant's assignment: the experiment's spec over ``group``, on-board
    ``custom`` for a module (dropping the built-in's parameters the off-board method does not
    take), tagged with the ``experiment`` key."""
    wire = spec_to_wire(plan.spec)
    if plan.variants[name] is not None and wire["onboard"] != "custom":
        kept = {p.name for p in registry.OFFBOARD[wire["offboard"]].parameters}
        for key in registry.parameters():
            if key not in kept:
                wire.pop(key, None)
        wire["onboard"] = "custom"
    wire["name"] = f"{plan.spec.name[:160]} [{name}]"  # at most 160 + 35 characters
    wire["clients"] = list(group)
    wire["experiment"] = {
        "id": experiment_id,
        "variant": name,
        "variants": plan.names,
        "seed": plan.seed,
        "metric": plan.metric if isinstance(plan.metric, str) else None,
        "test": plan.test,
    }
    return wire


@dataclass
class Experiment:
    """A running experiment: its id, seed, groups, one assignment per variant, what each
    deployment reported and which vehicles were left out (and why)."""

    o: Oodida
    id: str
    plan: ExperimentPlan
    groups: dict[str, tuple[int, ...]]
    assignments: dict[str, Assignment]
    versions: dict[str, str | None]
    excluded: dict[int, str] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.plan.seed

    def __repr__(self) -> str:
        return f"<Experiment {self.id} {', '.join(self.plan.names)} seed={self.seed}>"

    def result(self, metric: Metric = None) -> ExperimentResult:
        """The statistics of what the assignments finished so far (``metric`` overrides the plan's)."""
        results = {name: a.result() for name, a in self.assignments.items()}
        infos = [
            VariantInfo(
                name,
                str(self.plan.variants[name] or BUILTIN),
                self.versions.get(name),
                self.groups[name],
                self.assignments[name].id,
            )
            for name in self.plan.names
        ]
        return build_result(
            self.id,
            self.seed,
            infos,
            results,
            metric=metric if metric is not None else self.plan.metric,
            test=self.plan.test,
            confidence=self.plan.confidence,
            excluded=self.excluded,
        )

    def wait(
        self, timeout: float | None = None, progress: bool = False, metric: Metric = None
    ) -> ExperimentResult:
        """Until every variant's assignment ended (they run at once); the ExperimentResult."""
        for a in self.assignments.values():
            a.wait(timeout=timeout, progress=progress)
        return self.result(metric)

    def cancel(self) -> ExperimentResult:
        for a in self.assignments.values():
            if a.status() not in FINAL_STATUSES:
                a.cancel()
        return self.result()


def run_experiment(o: Oodida, plan: ExperimentPlan, deploy_timeout: float = 30.0) -> Experiment:
    """Select, split, deploy and submit (see the module's text); the running Experiment."""
    experiment_id = uuid.uuid4().hex[:12]
    ids = select_vehicles(plan.spec.clients, o.clients(), plan.seed)
    groups = split_groups(ids, plan.names, plan.split, plan.seed)
    deployments = {
        name: o.deploy_onboard(path, clients=list(groups[name]))
        for name, path in plan.variants.items()
        if path is not None
    }
    excluded: dict[int, str] = {}
    versions: dict[str, str | None] = {name: None for name in plan.names}
    for name, deployment in deployments.items():
        try:
            report = deployment.wait(timeout=deploy_timeout)
        except CustomCodeError as exc:
            raise CustomCodeError(f"variant {name} ({plan.variants[name]}): {exc}") from None
        versions[name] = report.version
        left = {int(c): f"refused variant {name}: {why}" for c, why in report.rejected.items()}
        left |= {
            c: f"did not confirm variant {name}'s module within {deploy_timeout:g}s" for c in report.pending
        }
        excluded |= left
        groups[name] = tuple(c for c in groups[name] if c not in left)
        if not groups[name]:
            reasons = "; ".join(f"client {c} {why}" for c, why in sorted(left.items())[:5])
            raise OodidaError(f"variant {name}: no vehicle of its group runs its module ({reasons})")
    handles = {
        name: o.submit(variant_spec(plan, name, groups[name], experiment_id), wait_accepted=False)
        for name in plan.names
    }
    try:
        for handle in handles.values():
            handle.wait_accepted(o.accept_timeout)
    except BaseException:
        for handle in handles.values():
            with contextlib.suppress(OodidaError):
                handle.cancel(timeout=5)
        raise
    return Experiment(o, experiment_id, plan, groups, handles, versions, excluded)


def find_experiment(
    o: Oodida,
    experiment_id: str,
    metric: Metric = None,
    test: str | None = None,
    confidence: float | None = None,
) -> ExperimentResult:
    """An experiment rebuilt from its stored assignments (the user's own): their groups,
    versions and results, with the metric, test and confidence recorded (or given here)."""
    if not isinstance(experiment_id, str) or not experiment_id.replace("-", "").replace("_", "").isalnum():
        raise UnknownAssignment(f"no experiment {experiment_id!r:.80} of user {o.user!r}")
    found: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {}
    tag: dict[str, Any] = {}
    for aid in reversed(o.assignments()):
        record = o.store.get(aid)
        if record is None:
            continue
        mark = record.spec.get("experiment")
        if isinstance(mark, Mapping) and mark.get("id") == experiment_id and mark.get("variant") not in found:
            tag = dict(mark)
            found[str(mark["variant"])] = (aid, dict(record.spec), tuple(record.clients))
            if len(found) == len(tag.get("variants") or ()):
                break
    if not found:
        raise UnknownAssignment(f"no experiment {experiment_id!r} of user {o.user!r}")
    names = [n for n in tag.get("variants") or found if n in found]
    infos = [
        VariantInfo(
            name,
            "custom" if found[name][1].get("onboard") == "custom" else BUILTIN,
            None,
            found[name][2],
            found[name][0],
        )
        for name in names
    ]
    results = {name: o.assignment(found[name][0]).result() for name in names}
    return build_result(
        experiment_id,
        int(tag.get("seed", 0)),
        infos,
        results,
        metric=metric if metric is not None else tag.get("metric"),
        test=check_test(test if test is not None else tag.get("test", "welch")),
        confidence=check_confidence(confidence if confidence is not None else 0.95),
        missing=[n for n in tag.get("variants") or () if n not in found],
    )


__all__ = [
    "BUILTIN",
    "Experiment",
    "ExperimentPlan",
    "find_experiment",
    "from_json",
    "plan_experiment",
    "run_experiment",
    "select_vehicles",
    "variant_spec",
]
