"""A result as a table and as a figure: ``Result.rows()``, ``to_frame()``, ``plot()``.

Flattening, one row per (client, iteration, signal):
* an on-board value that is a dict whose keys are all signals of the assignment (what every
  built-in method returns: ``{"speed": 27.6, "rpm": 2100.0}``) gives one row per signal;
* any other value (a number from a custom module, a model from ``train``, a histogram) gives one
  row whose ``signal`` is the assignment's signal, or its signals joined by commas when the value
  was computed from several;
* values are kept as they are: numbers stay numbers, lists and dicts stay Python objects in the
  ``value`` column (``df.explode("value")`` spreads lists over rows).

Only the results the majority vote kept have values; ``version`` is the code version that
produced each. pandas and matplotlib are optional: ``pip install 'oodida[analysis]'``. The
figure itself is drawn by ``oodida_user.plots``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oodida_core.protocol.text import short_version
from oodida_core.protocol.wire import IterationResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLUMNS = ("client", "iteration", "signal", "value", "version")
EXTRA = "pip install 'oodida[analysis]'"


@dataclass(frozen=True)
class Row:
    client: int
    iteration: int
    signal: str
    value: Any
    version: str


def split_by_signal(value: Any, signals: Sequence[str]) -> list[tuple[str, Any]]:
    """``value`` as (signal, value) pairs, following the flattening rules above."""
    if isinstance(value, dict) and value and all(k in signals for k in value):
        return sorted(value.items(), key=lambda kv: signals.index(kv[0]))
    return [(",".join(signals), value)]


def signals_of(spec: dict[str, Any]) -> list[str]:
    raw = spec.get("signals") or []
    return [raw] if isinstance(raw, str) else [str(s) for s in raw]


def onboard_rows(iterations: Iterable[IterationResult], signals: Sequence[str]) -> list[Row]:
    rows = []
    for it in sorted(iterations, key=lambda i: i.index):
        for cid in sorted(it.onboard):
            version = it.versions.get(cid, "builtin")
            for signal, value in split_by_signal(it.onboard[cid], signals):
                rows.append(Row(cid, it.index, signal, value, version))
    return rows


def to_frame(rows: Sequence[Row]) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(f"Result.to_frame() needs pandas: {EXTRA}") from None
    return pd.DataFrame([[getattr(r, c) for c in COLUMNS] for r in rows], columns=list(COLUMNS))


def code_label(it: IterationResult) -> str:
    """The code an iteration's kept results ran ("+" between versions when several were kept)
    and, when it is not built-in, the off-board module's version."""
    kept = sorted({it.versions.get(cid, "builtin") for cid in it.onboard}) or ["none"]
    label = "+".join(short_version(v) for v in kept)
    if it.offboard_version != "builtin":
        label += f" / off-board {short_version(it.offboard_version)}"
    return label


def version_changes(iterations: Sequence[IterationResult]) -> list[tuple[int, str]]:
    """(iteration, label) for the first iteration and every one whose code differs from the
    previous iteration's; iterations without kept results change nothing."""
    out: list[tuple[int, str]] = []
    for it in sorted(iterations, key=lambda i: i.index):
        if not it.onboard and it.offboard_version == "builtin":
            continue
        label = code_label(it)
        if not out or out[-1][1] != label:
            out.append((it.index, label))
    return out


def plot(
    title: str,
    iterations: Sequence[IterationResult],
    signals: Sequence[str],
    fleet_label: str | None,
    signal: str | None = None,
    ax: Axes | None = None,
    onboard: str | None = None,
) -> Figure:
    """The result as a matplotlib Figure: bars per client for one iteration, a line per client
    over the iterations otherwise, units on the y axis, code versions tagged; see
    ``oodida_user.plots`` (imported here on first use, so that this module needs no matplotlib)."""
    from .plots import plot as draw

    return draw(title, iterations, signals, fleet_label, signal=signal, ax=ax, onboard=onboard)
