"""What the analyst gets back: an assignment's result, its iterations, readable as text."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oodida_core.text import printable
from oodida_core.wire import AssignmentRecord, IterationResult

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


@dataclass(frozen=True)
class IterationCounts:
    """How one iteration's clients fared: results kept, discarded by the vote over code
    versions, clients that did not answer in time (missing) and tasks that failed."""

    index: int
    kept: int
    discarded: int
    missing: int
    failed: int
    ended_by: str = "complete"

    @classmethod
    def of(cls, it: IterationResult) -> IterationCounts:
        return cls(it.index, len(it.onboard), len(it.discarded), len(it.missing), len(it.failed), it.ended_by)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kept": self.kept,
            "discarded": self.discarded,
            "missing": self.missing,
            "failed": self.failed,
            "ended_by": self.ended_by,
        }

    def __str__(self) -> str:
        return f"kept {self.kept}, discarded {self.discarded}, missing {self.missing}, failed {self.failed}"


@dataclass(frozen=True)
class Result:
    """An assignment's outcome so far: status, iterations, and the latest off-board value."""

    id: str
    status: str
    spec: dict[str, Any]
    clients: tuple[int, ...]
    iterations: list[IterationResult] = field(default_factory=list)
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

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
        )

    @property
    def value(self) -> Any:
        """The off-board output of the last finished iteration (None before the first)."""
        return self.iterations[-1].value if self.iterations else None

    @property
    def counts(self) -> list[IterationCounts]:
        """Per finished iteration: how many results were kept, discarded, missing and failed."""
        return [IterationCounts.of(it) for it in self.iterations]

    def totals(self) -> dict[str, int]:
        """The counts summed over every finished iteration, and the number of iterations."""
        counts = self.counts
        return {
            "iterations": len(counts),
            "kept": sum(c.kept for c in counts),
            "discarded": sum(c.discarded for c in counts),
            "missing": sum(c.missing for c in counts),
            "failed": sum(c.failed for c in counts),
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
            "iterations": [i.to_wire() for i in self.iterations],
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
        """A matplotlib Figure: numeric on-board values per iteration, one line per client and
        one panel per signal, the fleet's off-board value as a thick black line (unless the
        off-board method is ``collect``), and a dashed red line with the new version where the
        code changed. ``ax`` draws one signal into your own axes. Needs matplotlib
        (``pip install 'oodida[analysis]'``). ``result.plot().savefig("result.png")``."""
        offboard = str(self.spec.get("offboard", "collect"))
        return analysis.plot(
            f"{self.spec.get('name', '')} ({self.id}): on-board values per client",
            self.iterations,
            analysis.signals_of(self.spec),
            None if offboard == "collect" else offboard,
            signal=signal,
            ax=ax,
        )

    # -- rendering ---------------------------------------------------------------------------
    def summary(self, width: int = 100) -> str:
        name = self.spec.get("name", "")
        lines = [
            f"assignment {self.id} ({name}): {self.status}, "
            f"{len(self.iterations)} iteration(s) on {len(self.clients)} client(s)"
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        if len(self.iterations) > 1:
            t = self.totals()
            lines.append(
                f"  in all: kept {t['kept']}, discarded {t['discarded']}, missing {t['missing']}, "
                f"failed {t['failed']}"
            )
        for it in self.iterations:
            took = it.finished_at - it.started_at
            code = analysis.code_label(it)
            code = "" if code in ("builtin", "none") else f", code {code}"
            lines.append(
                f"  iteration {it.index}: {IterationCounts.of(it)}, {took:.2f}s ({it.ended_by}){code}"
            )
            lines.append(f"    value: {_short(it.value, width)}")
            if it.error:
                lines.append(f"    off-board error: {it.error}")
            for cid, why in list(it.failed.items())[:5]:
                lines.append(f"    client {cid} failed: {_short(why, width)}")
            if it.missing:
                lines.append(f"    missing: {list(it.missing)}")
        return printable("\n".join(lines), newlines=True)  # names and errors come from others

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        name = self.spec.get("name", "")
        return (
            f"<Result {self.id} {name!r} {self.status}: {len(self.iterations)} iteration(s) "
            f"on {len(self.clients)} client(s)>"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython's text display
        p.text(self.summary())

    def _repr_html_(self, max_rows: int = 30, width: int = 80) -> str:  # Jupyter
        """A header line and a table with one row per iteration (the first and last ones
        when there are more than ``max_rows``)."""
        e = html.escape
        head = (
            f"<b>assignment {e(self.id)}</b> ({e(str(self.spec.get('name', '')))}): "
            f"<b>{e(self.status)}</b>, {len(self.iterations)} iteration(s) on "
            f"{len(self.clients)} client(s)"
        )
        if self.error:
            head += f"<br><span style='color:#b00'>error: {e(self.error)}</span>"
        cols = ("iteration", "value", "kept", "discarded", "missing", "failed", "code", "took", "ended by")
        its = self.iterations
        shown: list[IterationResult | None] = list(its)
        if len(its) > max_rows:
            shown = [*its[: max_rows - 5], None, *its[-5:]]
        body = []
        for it in shown:
            if it is None:
                body.append(f"<tr><td colspan='{len(cols)}'>... {len(its) - max_rows} more ...</td></tr>")
                continue
            cells = (
                it.index,
                _short(it.value, width),
                len(it.onboard),
                len(it.discarded),
                len(it.missing),
                len(it.failed),
                analysis.code_label(it),
                f"{it.finished_at - it.started_at:.2f}s",
                it.ended_by,
            )
            body.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
        table = (
            "<table><thead><tr>"
            + "".join(f"<th>{c}</th>" for c in cols)
            + "</tr></thead><tbody>"
            + "".join(body)
            + "</tbody></table>"
        )
        return f"<div class='oodida-result'><p>{head}</p>{table if its else ''}</div>"


def _short(value: Any, width: int) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."
