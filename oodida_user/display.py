"""Results and assignments as HTML, for Jupyter: ``Result._repr_html_`` and ``assignment_html``.

Everything that comes from others (names, values, errors, versions) is escaped; a failed
iteration's row is highlighted and its client failures are listed under it (the first few, then
how many more); folded iterations (an assignment's ``keep`` cap) show as one row first.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

from oodida_core.protocol.errors import OodidaError

from . import analysis
from .results import FAILURES_SHOWN, IterationCounts, _short, failure_lines, folded_line

if TYPE_CHECKING:
    from oodida_core.protocol.wire import IterationResult

    from .assignment import Assignment
    from .results import Result

STATUS_COLOURS = {
    "pending": "#777",
    "running": "#06c",
    "done": "#080",
    "failed": "#b00",
    "cancelled": "#a60",
}
FAILED_ROW = "background:#fdd"
COLUMNS = (
    "iteration",
    "status",
    "value",
    "kept",
    "discarded",
    "missing",
    "late",
    "failed",
    "code",
    "took",
    "ended by",
)


def rounded(value: Any, digits: int = 6) -> Any:
    """``value`` with every float to ``digits`` significant digits, for a readable table cell."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def status_html(status: str) -> str:
    """The status in bold, coloured by what it means (done green, failed red, ...)."""
    colour = STATUS_COLOURS.get(status, "#000")
    return f"<b class='oodida-status-{html.escape(status)}' style='color:{colour}'>{html.escape(status)}</b>"


def _row(it: IterationResult, width: int) -> str:
    e = html.escape
    c = IterationCounts.of(it)
    cells = (
        it.index,
        it.status,
        _short(rounded(it.value), width),
        c.kept,
        c.discarded,
        c.missing,
        c.late,
        c.failed,
        analysis.code_label(it),
        f"{it.finished_at - it.started_at:.2f}s",
        it.ended_by,
    )
    tds = "".join(f"<td>{e(str(x))}</td>" for x in cells)
    if it.status != "failed":
        return f"<tr>{tds}</tr>"
    return f"<tr class='oodida-failed' style='{FAILED_ROW}'>{tds}</tr>"


def _problems(it: IterationResult, width: int, failures: int) -> str:
    """A row under the iteration's row: its off-board error and client failures, if any."""
    lines = [f"off-board error: {it.error}"] if it.error else []
    lines += failure_lines(it, width, failures)
    if not lines:
        return ""
    style = FAILED_ROW if it.status == "failed" else "color:#b00"
    text = "<br>".join(html.escape(line) for line in lines)
    cell = f"<td colspan='{len(COLUMNS) - 1}'>{text}</td>"
    return f"<tr class='oodida-failures' style='{style}'><td></td>{cell}</tr>"


def result_html(result: Result, max_rows: int = 30, width: int = 80, failures: int = FAILURES_SHOWN) -> str:
    """A header (status coloured, error, totals) and a table: the folded iterations as one row,
    then one row per kept iteration (the first and last ones when there are more than
    ``max_rows``), each failed one highlighted with its client failures under it."""
    e = html.escape
    head = (
        f"<b>assignment {e(result.id)}</b> ({e(str(result.spec.get('name', '')))}): "
        f"{status_html(result.status)}, {result.iterations_done} iteration(s) on "
        f"{len(result.clients)} client(s)"
    )
    if result.error:
        head += f"<br><span style='color:#b00'>error: {e(result.error)}</span>"
    if result.iterations_done > 1:
        t = result.totals()
        head += (
            f"<br>in all: kept {t['kept']}, discarded {t['discarded']}, missing {t['missing']}, "
            f"failed {t['failed']}"
        )
        if t["late"]:
            head += f", late {t['late']}"
        if t["failed_iterations"]:
            head += f"; <span style='color:#b00'>{t['failed_iterations']} failed iteration(s)</span>"
    its = result.iterations
    shown: list[IterationResult | None] = list(its)
    if len(its) > max_rows:
        shown = [*its[: max_rows - 5], None, *its[-5:]]
    body = []
    if result.folded:
        body.append(
            f"<tr class='oodida-folded' style='color:#555'><td colspan='{len(COLUMNS)}'>"
            f"{e(folded_line(result.folded))}</td></tr>"
        )
    for it in shown:
        if it is None:
            body.append(f"<tr><td colspan='{len(COLUMNS)}'>... {len(its) - max_rows} more ...</td></tr>")
            continue
        body.append(_row(it, width))
        body.append(_problems(it, width, failures))
    table = (
        "<table><thead><tr>"
        + "".join(f"<th>{c}</th>" for c in COLUMNS)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )
    return f"<div class='oodida-result'><p>{head}</p>{table if body else ''}</div>"


def assignment_html(assignment: Assignment) -> str:
    """A submitted assignment as Jupyter shows it: its progress (iterations done of the total, a
    progress bar, clients that answered the current iteration), then its result so far."""
    e = html.escape
    try:
        p = assignment.progress()
        result = assignment.result() if p.iterations_done else None
    except OodidaError as exc:  # expired, purged, or the broker is unreachable
        return f"<div class='oodida-assignment'><b>assignment {e(assignment.id)}</b>: {e(str(exc))}</div>"
    total = "?" if p.iterations is None else str(p.iterations)
    name = e(str(assignment.spec.get("name", "")))
    line = (
        f"<b>assignment {e(assignment.id)}</b> ({name}): {status_html(p.status)}, "
        f"{p.iterations_done}/{total} iteration(s)"
    )
    if p.status == "running" and p.answered is not None:
        line += f", {p.answered}/{p.clients} client(s) answered iteration {p.iterations_done}"
    bar = ""
    if p.iterations:
        bar = f"<br><progress value='{p.iterations_done}' max='{p.iterations}'></progress>"
    table = result_html(result) if result is not None else ""
    return f"<div class='oodida-assignment'><p>{line}{bar}</p>{table}</div>"
