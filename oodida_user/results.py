"""What the analyst gets back: an assignment's result, its iterations, readable as text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oodida_core.protocol.text import printable, short_version, shorten
from oodida_core.protocol.wire import AssignmentRecord, FoldedIterations, IterationResult

from . import analysis

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _int_keys(value: Any) -> Any:
    """collect's {client_id: value} comes back from JSON with string keys; restore the ints."""
    if isinstance(value, dict) and value and all(isinstance(k, str) and k.isdigit() for k in value):
        return {int(k): v for k, v in value.items()}
    return value


def iteration_for_user(it: IterationResult, offboard: str) -> IterationResult:
    if offboard == "collect" and isinstance(it.value, dict):
        return it.model_copy(update={"value": _int_keys(it.value)})
    return it


FAILURES_SHOWN = 5  # per iteration, in the text and the HTML renderings; then "and N more"


@dataclass(frozen=True)
class IterationCounts:
    """How one iteration's clients fared: results kept, discarded by the vote over code
    versions, clients that did not answer in time (missing) and tasks that failed; and the
    iteration's status (``failed``: no value, because every answer or the off-board step failed).
    ``late``: clients that had not answered when the iteration's quorum (min_clients) closed it."""

    index: int
    kept: int
    discarded: int
    missing: int
    failed: int
    ended_by: str = "complete"
    status: str = "ok"
    late: int = 0

    @classmethod
    def of(cls, it: IterationResult) -> IterationCounts:
        return cls(
            it.index,
            len(it.onboard),
            len(it.discarded),
            len(it.missing),
            len(it.failed),
            it.ended_by,
            it.status,
            len(it.late),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "status": self.status,
            "kept": self.kept,
            "discarded": self.discarded,
            "missing": self.missing,
            "failed": self.failed,
            "late": self.late,
            "ended_by": self.ended_by,
        }

    def __str__(self) -> str:
        text = f"kept {self.kept}, discarded {self.discarded}, missing {self.missing}, failed {self.failed}"
        return text + (f", late {self.late}" if self.late else "")


@dataclass(frozen=True)
class Result:
    """An assignment's outcome so far: status, iterations, and the latest off-board value.

    ``iterations`` are the iterations kept one by one; with a ``keep`` cap the older ones are
    ``folded`` into one summary (counts, index range, value statistics, versions)."""

    id: str
    status: str
    spec: dict[str, Any]
    clients: tuple[int, ...]
    iterations: list[IterationResult] = field(default_factory=list)
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    folded: FoldedIterations | None = None

    @classmethod
    def build(cls, record: AssignmentRecord, iterations: list[IterationResult]) -> Result:
        offboard = str(record.spec.get("offboard", "collect"))
        return cls(
            id=record.id,
            status=record.status,
            spec=dict(record.spec),
            clients=tuple(record.clients),
            iterations=[iteration_for_user(i, offboard) for i in iterations],
            error=record.error,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            folded=record.folded if record.folded is not None and record.folded.count else None,
        )

    @property
    def value(self) -> Any:
        """The off-board output of the last finished iteration (None before the first)."""
        return self.iterations[-1].value if self.iterations else None

    @property
    def counts(self) -> list[IterationCounts]:
        """Per finished iteration: how many results were kept, discarded, missing and failed."""
        return [IterationCounts.of(it) for it in self.iterations]

    @property
    def iterations_done(self) -> int:
        """Every finished iteration: the folded ones and the ones kept one by one."""
        return (self.folded.count if self.folded else 0) + len(self.iterations)

    def totals(self) -> dict[str, int]:
        """The counts summed over every finished iteration, folded ones included:
        ``iterations`` = ``folded_iterations`` + ``kept_iterations`` (kept one by one), of which
        ``failed_iterations`` failed; ``kept``, ``discarded``, ``missing``, ``failed`` and ``late``
        (not answered when a quorum closed the iteration) count client results."""
        counts = self.counts
        f = self.folded or FoldedIterations()
        return {
            "iterations": f.count + len(counts),
            "folded_iterations": f.count,
            "kept_iterations": len(counts),
            "failed_iterations": f.failed_iterations + sum(c.status == "failed" for c in counts),
            "kept": f.kept + sum(c.kept for c in counts),
            "discarded": f.discarded + sum(c.discarded for c in counts),
            "missing": f.missing + sum(c.missing for c in counts),
            "failed": f.failed + sum(c.failed for c in counts),
            "late": f.late + sum(c.late for c in counts),
        }

    @property
    def done(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "clients": list(self.clients),
            "spec": self.spec,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "folded": self.folded.to_wire() if self.folded else None,
            "iterations": [i.to_wire() for i in self.iterations],  # each with its status
        }

    # -- analysis ----------------------------------------------------------------------------
    def rows(self) -> list[analysis.Row]:
        """The kept on-board values, one row per (client, iteration, signal); see to_frame."""
        return analysis.onboard_rows(self.iterations, analysis.signals_of(self.spec))

    def to_frame(self) -> Any:
        """A pandas DataFrame with columns client, iteration, signal, value, version: one row
        per kept on-board value and signal. A dict keyed by the assignment's signals (what
        built-in methods return) is split into one row per signal; any other value is one row
        whose signal is the assignment's signal(s) joined by commas. Lists and dicts stay
        Python objects in ``value``. Needs pandas (``pip install 'oodida[analysis]'``)."""
        return analysis.to_frame(self.rows())

    def plot(self, signal: str | None = None, ax: Axes | None = None) -> Figure:
        """A matplotlib Figure, one panel per signal with its unit on the y axis: for one
        iteration a bar per client; for several a line per client over the iterations, the
        fleet's off-board value as a thick black line (unless the off-board method is
        ``collect``), failed iterations shaded, and where the code changed a dashed red line
        tagged v2, v3, ... with a "code versions" key under the figure. ``ax`` draws one
        signal into your own axes. Needs matplotlib (``pip install 'oodida[analysis]'``).
        ``result.plot().savefig("result.png")``."""
        offboard = str(self.spec.get("offboard", "collect"))
        return analysis.plot(
            f"{self.spec.get('name', '')} ({self.id}): on-board values per client",
            self.iterations,
            analysis.signals_of(self.spec),
            None if offboard == "collect" else offboard,
            signal=signal,
            ax=ax,
            onboard=str(self.spec.get("onboard", "")),
        )

    # -- rendering ---------------------------------------------------------------------------
    def summary(self, width: int = 100, failures: int = FAILURES_SHOWN) -> str:
        """Status, totals, the folded iterations, then per kept iteration its counts, value and
        code; up to ``failures`` client failures each, then how many more."""
        name = self.spec.get("name", "")
        lines = [
            f"assignment {self.id} ({name}): {self.status}, "
            f"{self.iterations_done} iteration(s) on {len(self.clients)} client(s)"
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.iterations_done > 1:
            t = self.totals()
            line = (
                f"  in all: kept {t['kept']}, discarded {t['discarded']}, missing {t['missing']}, "
                f"failed {t['failed']}"
            )
            if t["late"]:
                line += f", late {t['late']}"
            if t["failed_iterations"]:
                line += f"; {t['failed_iterations']} failed iteration(s)"
            lines.append(line)
        if self.folded:
            lines.append(f"  {folded_line(self.folded)}")
        for it in self.iterations:
            took = it.finished_at - it.started_at
            code = analysis.code_label(it)
            code = "" if code in ("builtin", "none") else f", code {code}"
            mark = "FAILED — " if it.status == "failed" else ""
            lines.append(
                f"  iteration {it.index}: {mark}{IterationCounts.of(it)}, {took:.2f}s ({it.ended_by}){code}"
            )
            lines.append(f"    value: {_short(it.value, width)}")
            if it.error:
                lines.append(f"    off-board error: {it.error}")
            lines.extend(f"    {line}" for line in failure_lines(it, width, failures))
            if it.missing:
                lines.append(f"    missing: {list(it.missing)}")
            if it.late:
                lines.append(f"    late: {list(it.late)} (not answered when the quorum closed it; kept out)")
            if any(it.staleness.values()):  # asynchronous aggregation: models of older versions
                stale = ", ".join(f"{cid}: {n}" for cid, n in sorted(it.staleness.items()) if n)
                lines.append(f"    staleness: {stale} (versions behind; the others 0)")
        return printable("\n".join(lines), newlines=True)  # names and errors come from others

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        name = self.spec.get("name", "")
        return (
            f"<Result {self.id} {name!r} {self.status}: {self.iterations_done} iteration(s) "
            f"on {len(self.clients)} client(s)>"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython's text display
        p.text(self.summary())

    def _repr_html_(self, max_rows: int = 30, width: int = 80) -> str:  # Jupyter
        """A header (status coloured, error, totals) and a table: the folded iterations as one
        row, then one row per iteration (the first and last ones when there are more than
        ``max_rows``), failed iterations highlighted, client failures listed under their row."""
        from .display import result_html

        return result_html(self, max_rows=max_rows, width=width)


def failure_lines(it: IterationResult, width: int, limit: int = FAILURES_SHOWN) -> list[str]:
    """``client N failed: why`` for the first ``limit`` failures, then ``and K more failed
    client(s)`` when there are more."""
    items = sorted(it.failed.items())
    lines = [f"client {cid} failed: {_short(why, width)}" for cid, why in items[:limit]]
    if len(items) > limit:
        lines.append(f"and {len(items) - limit} more failed client(s)")
    return lines


def _number(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def folded_line(f: FoldedIterations) -> str:
    """The folded iterations in one line: index range and count, client counts, failed
    iterations, min/mean/max per value key, other values, and versions with their counts."""
    parts = [
        f"iterations {f.first}-{f.last} folded: {f.count} iteration(s), kept {f.kept}, "
        f"discarded {f.discarded}, missing {f.missing}, failed {f.failed}"
        + (f", late {f.late}" if f.late else "")
    ]
    if f.failed_iterations:
        parts.append(f"{f.failed_iterations} failed iteration(s)")
    for key, n in sorted(f.values.items()):
        label = f"{key} " if key else "value "
        parts.append(f"{label}min {_number(n.min)} mean {_number(n.mean)} max {_number(n.max)} (n={n.n})")
    if f.other_values:
        parts.append(f"{f.other_values} other value(s)")
    if f.versions:
        shown = ", ".join(
            f"{short_version(v)} ({n})" for v, n in sorted(f.versions.items(), key=lambda x: -x[1])
        )
        parts.append(f"versions {shown}")
    return "; ".join(parts)


def _short(value: Any, width: int) -> str:
    return shorten(json.dumps(value, default=str), width)
