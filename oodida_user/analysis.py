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
produced each. pandas and matplotlib are optional: ``pip install 'oodida[analysis]'``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oodida_core.wire import IterationResult

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


def short_version(version: str) -> str:
    """``sha256:`` and the first 12 hex digits; ``builtin`` as it is."""
    return version[:19] if version.startswith("sha256:") else version


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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def plot(
    title: str,
    iterations: Sequence[IterationResult],
    signals: Sequence[str],
    fleet_label: str | None,
    signal: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """On-board values per iteration, one line per client and one axes per signal; the fleet
    (off-board) value as a thick line when it is a number per signal; a dashed vertical line
    and a label where the code version changed."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError(f"Result.plot() needs matplotlib: {EXTRA}") from None
    rows = [r for r in onboard_rows(iterations, signals) if _number(r.value) is not None]
    names = list(dict.fromkeys(r.signal for r in rows))
    if signal is not None:
        if signal not in names:
            raise ValueError(f"no numeric values of {signal!r} to plot; there are: {names or 'none'}")
        names = [signal]
    if not names:
        raise ValueError(
            "nothing to plot: the kept on-board values are not numbers (or there are none yet); "
            "result.to_frame() or result.rows() has them all"
        )
    if ax is not None and len(names) > 1:
        raise ValueError(f"ax= draws one signal: pass signal= one of {names}")
    fig: Any
    if ax is None:
        fig = Figure(figsize=(9, 1.2 + 2.8 * len(names)), layout="constrained")
        axes = list(fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0])
        fig.suptitle(title)
    else:
        axes, fig = [ax], ax.get_figure()
    clients = sorted({r.client for r in rows})
    changes = version_changes(iterations)
    for axis, name in zip(axes, names, strict=True):
        for cid in clients:
            points = [(r.iteration, _number(r.value)) for r in rows if r.client == cid and r.signal == name]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, marker="o", markersize=3, linewidth=1, alpha=0.8, label=f"client {cid}")
        if fleet_label is not None:
            fleet = [
                (it.index, _number(v))
                for it in iterations
                for s, v in split_by_signal(it.value, signals)
                if s == name and _number(v) is not None
            ]
            if fleet:
                xs, ys = zip(*sorted(fleet), strict=True)
                axis.plot(xs, ys, color="black", linewidth=2.5, alpha=0.7, label=f"fleet ({fleet_label})")
        _mark_versions(axis, changes, max((it.index for it in iterations), default=0))
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(clients) <= 12:
            axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes[-1].set_xlabel("iteration")
    if fig is None:
        raise ValueError("ax= must belong to a figure")
    return fig


def _mark_versions(axis: Axes, changes: list[tuple[int, str]], last: int) -> None:
    if not changes or (len(changes) == 1 and changes[0][1] == "builtin"):
        return
    first = changes[0][0]
    for n, (index, label) in enumerate(changes):
        x = index if n == 0 else index - 0.5
        if n:
            axis.axvline(x, color="tab:red", linestyle="--", linewidth=1.2)
        right_half = n > 0 and x - first > (last - first) / 2  # label left of the line there
        axis.annotate(
            ("code " if n == 0 else "new code ") + label,
            xy=(x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-3 if right_half else 3, -3),
            textcoords="offset points",
            rotation=0,
            va="top",
            ha="right" if right_half else "left",
            fontsize=8,
            color="tab:red" if n else "dimgray",
        )
