"""Bounded streams: fold an assignment's oldest iterations into one summary.

An assignment keeps its latest ``keep`` iterations one by one (the spec's ``keep``, capped by
the operator's ``OODIDA_MAX_KEPT_ITERATIONS``); each older one is folded into a
``FoldedIterations`` record, so a stream that nobody stops holds a bounded amount of Redis and
the analyst still learns how many iterations there were and what they held. Pure functions:
the store applies a fold with a compare-and-set, so a repeated fold changes nothing.
"""

from __future__ import annotations

import math
from typing import Any

from oodida_core.protocol.wire import FoldedIterations, IterationResult, NumberSummary
from oodida_core.state.store import AssignmentStore

MAX_KEYS = 64  # keys of ``values`` and ``versions`` tracked; the rest counts as other values


def kept_iterations(spec_keep: int | None, operator_cap: int) -> int:
    """How many iterations an assignment keeps one by one: its own ``keep``, at most the cap."""
    return operator_cap if spec_keep is None else max(1, min(spec_keep, operator_cap))


def to_fold(stored_through: int, folded_through: int, keep: int) -> list[int]:
    """Indices to fold once iteration ``stored_through`` is stored, when every index up to
    ``folded_through`` is folded already (-1: none): those older than the latest ``keep``."""
    return list(range(folded_through + 1, stored_through - keep + 1))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _numbers(value: Any) -> list[tuple[str, float]] | None:
    """The numbers a value holds, with their keys ("" for a plain number); a dict of dicts of
    numbers (``collect`` of per-signal values: {client: {signal: number}}) gives the inner
    keys. None when the value holds anything else."""
    number = _number(value)
    if number is not None:
        return [("", number)]
    if not isinstance(value, dict) or not value:
        return None
    out: list[tuple[str, float]] = []
    for key, item in value.items():
        number = _number(item)
        if number is not None:
            out.append((str(key), number))
        elif isinstance(item, dict) and item and all(_number(v) is not None for v in item.values()):
            out.extend((str(k), float(v)) for k, v in item.items())
        else:
            return None
    return out


def _add(summary: NumberSummary | None, number: float) -> NumberSummary:
    if summary is None or summary.n == 0:
        return NumberSummary(n=1, min=number, max=number, sum=number)
    return NumberSummary(
        n=summary.n + 1,
        min=min(summary.min if summary.min is not None else number, number),
        max=max(summary.max if summary.max is not None else number, number),
        sum=summary.sum + number,
    )


def fold(summary: FoldedIterations | None, it: IterationResult) -> FoldedIterations:
    """``summary`` with iteration ``it`` folded in (``it`` must be the next index)."""
    base = summary or FoldedIterations(first=it.index, last=it.index - 1)
    if it.index != base.last + 1:
        raise ValueError(f"iteration {it.index} cannot be folded after {base.last}: fold them in order")
    values = dict(base.values)
    other = base.other_values
    numbers = _numbers(it.value) if it.status == "ok" else None
    if numbers is not None and len(set(values) | {k for k, _ in numbers}) <= MAX_KEYS:
        for key, number in numbers:
            values[key] = _add(values.get(key), number)
    elif it.status == "ok" and it.value is not None:
        other += 1
    versions = dict(base.versions)
    for cid in it.onboard:
        version = it.versions.get(cid, "builtin")
        if version in versions or len(versions) < MAX_KEYS:
            versions[version] = versions.get(version, 0) + 1
    return FoldedIterations(
        count=base.count + 1,
        first=base.first,
        last=it.index,
        started_at=it.started_at if base.started_at is None else base.started_at,
        finished_at=it.finished_at,
        kept=base.kept + len(it.onboard),
        discarded=base.discarded + len(it.discarded),
        missing=base.missing + len(it.missing),
        late=base.late + len(it.late),
        failed=base.failed + len(it.failed),
        failed_iterations=base.failed_iterations + (it.status == "failed"),
        values=values,
        other_values=other,
        versions=versions,
    )


def fold_older(store: AssignmentStore, aid: str, stored_through: int, keep: int) -> None:
    """Fold every iteration of ``aid`` older than the latest ``keep`` into its summary, once
    iteration ``stored_through`` is stored; a concurrent caller's fold is never repeated."""
    if stored_through < keep:
        return  # nothing is older than the latest keep yet: no read of the summary
    summary, last = store.folded(aid)
    for index in to_fold(stored_through, last, keep):
        it = store.iteration(aid, index)
        if it is None:
            return  # purged, or folded by someone else meanwhile
        folded = fold(summary, it)
        if not store.fold(aid, index, folded, last):
            return  # another cloud worker folds
        summary, last = folded, index
