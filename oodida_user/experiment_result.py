"""An experiment's outcome: each variant's metric per iteration and overall, the difference
from the control with its confidence interval, and the test of whether it is real.

The metric of one vehicle's on-board value (``metric_value``): a function of the value; for a
signal name, the value's entry for it (a value that is a plain number, as a custom module may
return, is taken as it is, so a built-in variant's ``{"speed": x}`` compares with it); or, for
None, the value itself when it is a number, or the one number in a one-entry dict (what a
built-in method returns for one signal).

Per iteration, each vehicle's value in that iteration is one observation. **Overall**, each
vehicle counts once: its metric averaged over the iterations it answered, so that a vehicle's
repeated iterations are not taken for independent vehicles (no pseudo-replication). The first
variant is the control; every other variant is compared with it (``oodida_user.stats``).
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from oodida_core.protocol.text import printable, short_version

from .analysis import EXTRA
from .stats import TEST_NAMES, Comparison, Summary, Test, compare, summarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .results import Result

Metric = Union[str, Callable[[Any], Any], None]  # noqa: UP007 - a runtime alias
COLUMNS = ("variant", "client", "iteration", "version", "value", "metric", "error")


def _number(x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"not a number: {x!r:.60}")
    out = float(x)
    if not math.isfinite(out):
        raise ValueError(f"not a finite number: {out}")
    return out


def metric_value(value: Any, metric: Metric) -> float:
    """The number ``metric`` reads off one vehicle's on-board value; ValueError saying why not."""
    if callable(metric):
        try:
            out = metric(value)
        except Exception as exc:  # the analyst's function: its error becomes the row's
            raise ValueError(f"metric raised {type(exc).__name__}: {exc}") from None
        return _number(out)
    if isinstance(metric, str):
        if not isinstance(value, Mapping):  # a module's plain number stands for the signal's metric
            return _number(value)
        if metric not in value:
            raise ValueError(f"the value has no entry {metric!r}: {value!r:.60}")
        return _number(value[metric])
    if isinstance(value, Mapping) and len(value) == 1:
        return _number(next(iter(value.values())))
    if isinstance(value, Mapping):
        raise ValueError(f"a value with {len(value)} entries needs metric= (a signal name or a function)")
    return _number(value)


def metric_label(metric: Metric) -> str:
    if callable(metric):
        return getattr(metric, "__name__", "a function")
    return metric or "the on-board value"


@dataclass(frozen=True)
class VariantInfo:
    name: str
    source: str  # the module's path, "custom" (rebuilt from storage) or "builtin"
    version: str | None  # the deployed module's version; None for builtin or unknown
    group: tuple[int, ...]
    assignment: str


@dataclass(frozen=True)
class Row:
    """One vehicle's kept on-board value in one iteration: its variant next to its version."""

    variant: str
    client: int
    iteration: int
    version: str
    value: Any
    metric: float | None
    error: str = ""


@dataclass(frozen=True)
class Stage:
    """One iteration (``index``) or the overall result (``index`` None): each variant's
    summary and each variant's comparison with the control."""

    index: int | None
    summaries: dict[str, Summary]
    comparisons: list[Comparison]


@dataclass(frozen=True)
class ExperimentResult:
    id: str
    seed: int
    variants: list[VariantInfo]
    test: Test
    confidence: float
    metric: str
    rows: list[Row]
    iterations: list[Stage]
    overall: Stage
    results: dict[str, Result] = field(default_factory=dict)
    excluded: dict[int, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # variants whose assignment was not found

    @property
    def control(self) -> str:
        return self.variants[0].name

    @property
    def groups(self) -> dict[str, tuple[int, ...]]:
        return {v.name: v.group for v in self.variants}

    @property
    def comparisons(self) -> list[Comparison]:
        """The overall comparisons (one value per vehicle)."""
        return self.overall.comparisons

    @property
    def statuses(self) -> dict[str, str]:
        return {name: r.status for name, r in self.results.items()}

    def to_frame(self) -> Any:
        """pandas: one row per vehicle and iteration: variant, client, iteration, version,
        value, metric, error (why the metric could not be read). Needs the analysis extra."""
        pd = _pandas()
        return pd.DataFrame([[getattr(r, c) for c in COLUMNS] for r in self.rows], columns=list(COLUMNS))

    def summary_frame(self) -> Any:
        """pandas: one row per iteration ("overall" last) and variant: n, mean, std, median,
        and for every variant but the control its difference, interval, p-value."""
        pd = _pandas()
        rows = []
        for stage in [*self.iterations, self.overall]:
            found = {c.variant: c for c in stage.comparisons}
            for name, s in stage.summaries.items():
                c = found.get(name)
                rows.append(
                    {
                        "iteration": "overall" if stage.index is None else stage.index,
                        "variant": name,
                        **s.to_dict(),
                        "difference": c.difference if c else None,
                        "low": c.low if c else None,
                        "high": c.high if c else None,
                        "pvalue": c.pvalue if c else None,
                        "significant": c.significant if c else None,
                    }
                )
        return pd.DataFrame(rows)

    def plot(self) -> Figure:
        """matplotlib: each variant's mean per iteration with its confidence band, and the
        overall difference of each variant from the control with its interval."""
        from .experiment_plot import plot_experiment

        return plot_experiment(self)

    def to_dict(self) -> dict[str, Any]:
        def stage(s: Stage) -> dict[str, Any]:
            return {
                "iteration": s.index,
                "summaries": {k: v.to_dict() for k, v in s.summaries.items()},
                "comparisons": [c.to_dict() for c in s.comparisons],
            }

        return {
            "id": self.id,
            "seed": self.seed,
            "test": self.test,
            "confidence": self.confidence,
            "metric": self.metric,
            "variants": [
                {
                    "name": v.name,
                    "source": v.source,
                    "version": v.version,
                    "group": list(v.group),
                    "assignment": v.assignment,
                    "status": self.statuses.get(v.name),
                }
                for v in self.variants
            ],
            "excluded": {str(k): v for k, v in sorted(self.excluded.items())},
            "missing": self.missing,
            "iterations": [stage(s) for s in self.iterations],
            "overall": stage(self.overall),
        }

    def summary(self) -> str:
        n = sum(len(v.group) for v in self.variants)
        lines = [
            f"experiment {self.id}: {len(self.variants)} variants on {n} vehicles (seed {self.seed}); "
            f"{TEST_NAMES[self.test]}, {self.confidence:.0%} intervals; metric: {self.metric}"
        ]
        for v in self.variants:
            code = v.source if v.version is None else f"{v.source} {short_version(v.version)}"
            status = self.statuses.get(v.name, "?")
            control = " (control)" if v.name == self.control else ""
            lines.append(
                f"  {v.name}{control}: {code}, {len(v.group)} vehicles {list(v.group)}, "
                f"assignment {v.assignment} ({status})"
            )
        for cid, why in sorted(self.excluded.items())[:10]:
            lines.append(f"  left out: client {cid} {why}")
        if self.missing:
            lines.append(f"  not found: variant(s) {', '.join(self.missing)}")
        unreadable = [r for r in self.rows if r.metric is None]
        if unreadable:
            lines.append(f"  {len(unreadable)} value(s) without a metric; the first: {unreadable[0].error}")
        lines.append(f"  {'iteration':>9}  {'variant':<10} {'n':>4} {'mean':>12} {'median':>12}")
        for stage in [*self.iterations, self.overall]:
            label = "overall" if stage.index is None else str(stage.index)
            if stage.index is None:
                lines.append("  overall: one value per vehicle, its metric averaged over the iterations")
            for name, s in stage.summaries.items():
                lines.append(f"  {label:>9}  {name:<10} {s.n:>4} {_fmt(s.mean):>12} {_fmt(s.median):>12}")
            lines.extend(f"  {'':>9}  {c}" for c in stage.comparisons)
        return printable("\n".join(lines), newlines=True)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<ExperimentResult {self.id} {', '.join(v.name for v in self.variants)}>"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(f"ExperimentResult.to_frame() needs pandas: {EXTRA}") from None
    return pd


def experiment_rows(name: str, result: Result, metric: Metric) -> list[Row]:
    rows = []
    for it in sorted(result.iterations, key=lambda i: i.index):
        for cid in sorted(it.onboard):
            value = it.onboard[cid]
            try:
                number, error = metric_value(value, metric), ""
            except ValueError as exc:
                number, error = None, str(exc)
            rows.append(Row(name, cid, it.index, it.versions.get(cid, "builtin"), value, number, error))
    return rows


def stage(
    index: int | None, values: Mapping[str, Sequence[float]], test: Test, confidence: float, seed: int
) -> Stage:
    """The summaries and comparisons of one iteration (or overall) from each variant's values."""
    names = list(values)
    summaries = {name: summarize(values[name]) for name in names}
    control = names[0]
    comparisons = [
        compare(
            values[control], values[name], test=test, confidence=confidence, names=(control, name), seed=seed
        )
        for name in names[1:]
    ]
    return Stage(index, summaries, comparisons)


def build_result(
    experiment_id: str,
    seed: int,
    variants: Sequence[VariantInfo],
    results: Mapping[str, Result],
    *,
    metric: Metric,
    test: Test,
    confidence: float,
    excluded: Mapping[int, str] | None = None,
    missing: Sequence[str] = (),
) -> ExperimentResult:
    names = [v.name for v in variants]
    rows = [row for name in names for row in experiment_rows(name, results[name], metric)]
    usable = [(r, r.metric) for r in rows if r.metric is not None]
    indices = sorted({r.iteration for r, _ in usable})
    iterations = [
        stage(
            i,
            {n: [m for r, m in usable if r.variant == n and r.iteration == i] for n in names},
            test,
            confidence,
            seed,
        )
        for i in indices
    ]
    per_vehicle: dict[str, dict[int, list[float]]] = {n: defaultdict(list) for n in names}
    for r, m in usable:
        per_vehicle[r.variant][r.client].append(m)
    overall_values = {n: [float(np.mean(v)) for _, v in sorted(per_vehicle[n].items())] for n in names}
    return ExperimentResult(
        id=experiment_id,
        seed=seed,
        variants=list(variants),
        test=test,
        confidence=confidence,
        metric=metric_label(metric),
        rows=rows,
        iterations=iterations,
        overall=stage(None, overall_values, test, confidence, seed),
        results=dict(results),
        excluded=dict(excluded or {}),
        missing=list(missing),
    )
