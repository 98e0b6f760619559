"""``Result.plot()``: a result as a matplotlib figure that reads without squinting.

* One iteration: a bar per client (clients on the x axis, by id) and, when the off-board method
  reduces to a number, the fleet value as a horizontal black line. A client of the iteration
  without a kept value (missing, late, discarded by the vote, failed) is an ``x`` on the zero line.
* Several iterations: a line per client over an integer ``iteration`` axis, broken where the
  client has no kept value, the fleet value as a thick black line, failed iterations shaded.
  Beyond ``MAX_CLIENT_ENTRIES`` clients the lines share one colour and one legend entry.
* One panel per plotted series: per signal for a value keyed by signal (what built-in methods
  return), per key for a custom value that is a dict of numbers (``speed · loss``).
* The y axis names the signal and its unit (``speed [km/h]``, from ``oodida_core.protocol.signals``;
  ``variance`` squares it, ``count`` has none); a series of no known signal shows its name.

Code versions: a change is a dashed red line between the iterations, tagged ``v2``, ``v3``...
above the axes, and a key under the figure tells each tag's iterations and code hash. Why a key
and short tags rather than the hash at the line: a hash is 19 characters (more with an off-board
module), so two changes a few iterations apart collide whatever the rotation, while a 2-3
character tag fits over most iteration gaps; where tags would still touch (changes in adjacent
iterations), they are stacked in rows after measuring them, so they never overlap each other,
and they sit outside the axes, so they cover neither data nor legend; the constrained layout
keeps them clear of the title. The key is an ordinary legend: its lines never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oodida_core.protocol.signals import SIGNALS, canonical
from oodida_core.protocol.wire import IterationResult

from .analysis import EXTRA, onboard_rows, split_by_signal, version_changes

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    from matplotlib.text import Annotation

MAX_CLIENT_ENTRIES = 12  # more clients than this: one legend entry for all client lines
MAX_CLIENT_TICKS = 60  # more clients than this in a bar chart: every k-th client id labelled
ROTATE_CLIENT_TICKS = 20  # more clients than this: client ids written vertically
PANEL_HEIGHT = 2.6  # inches per panel
KEY_LINE_HEIGHT = 0.2  # inches per line of the version key
TAG_ROW = 11.0  # points between two rows of version tags (font size 8)
PRETTY_UNITS = {"degC": "°C", "m/s^2": "m/s²"}


@dataclass(frozen=True)
class Point:
    client: int
    iteration: int
    series: str
    value: float


def number(value: Any) -> float | None:
    """A finite int or float as a float; None for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def numbers(name: str, value: Any) -> list[tuple[str, float]]:
    """The numbers ``value`` holds, as (series, number): a number as itself, a dict's numeric
    entries as ``name · key`` each; nothing for lists, strings and other values."""
    n = number(value)
    if n is not None:
        return [(name, n)]
    if isinstance(value, dict):
        found = [(f"{name} · {k}", number(v)) for k, v in value.items()]
        return [(s, v) for s, v in found if v is not None]
    return []


def numeric_points(iterations: Iterable[IterationResult], signals: Sequence[str]) -> list[Point]:
    return [
        Point(row.client, row.iteration, series, value)
        for row in onboard_rows(iterations, signals)
        for series, value in numbers(row.signal, row.value)
    ]


def fleet_values(
    iterations: Iterable[IterationResult], signals: Sequence[str]
) -> dict[tuple[str, int], float]:
    """(series, iteration) -> the off-board value, where it is a number for that series."""
    return {
        (series, it.index): value
        for it in iterations
        for signal, v in split_by_signal(it.value, signals)
        for series, value in numbers(signal, v)
    }


def axis_label(series: str, onboard: str | None = None) -> str:
    """The series with its unit in brackets when it is a signal of known unit."""
    signal = SIGNALS.get(canonical(series) or "")
    if signal is None:
        return series
    unit = PRETTY_UNITS.get(signal.unit, signal.unit)
    if onboard == "count":
        return f"{series} (count of samples)"
    if onboard == "variance":
        return f"{series} [({unit})²]"
    return f"{series} [{unit}]"


def version_key(iterations: Sequence[IterationResult]) -> list[tuple[int, str]]:
    """(iteration, key line) per code version in use, in order; empty when only built-in code
    ran. With one iteration there is no change to mark: one line naming the code."""
    changes = version_changes(iterations)
    if not changes or (len(changes) == 1 and changes[0][1] == "builtin"):
        return []
    if len(iterations) == 1:
        return [(changes[0][0], f"code {changes[0][1]}")]
    last = max(it.index for it in iterations)
    out = []
    for n, (index, label) in enumerate(changes):
        end = changes[n + 1][0] - 1 if n + 1 < len(changes) else last
        span = f"iteration {index}" if end <= index else f"iterations {index}-{end}"
        out.append((index, f"v{n + 1}  {span}: {label}"))
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
    """The figure described in this module's docstring. ``fleet_label`` names the off-board
    method (None: no fleet value, as with ``collect``); ``onboard`` the on-board method, for the
    unit; ``ax`` draws the one ``signal`` into the caller's axes (the legend goes right of it)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"Result.plot() needs matplotlib: {EXTRA}") from None
    its = sorted(iterations, key=lambda i: i.index)
    points = numeric_points(its, signals)
    names = list(dict.fromkeys(p.series for p in points))
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
    key = version_key(its)
    fig: Any
    if ax is None:
        height = 1.0 + PANEL_HEIGHT * len(names) + KEY_LINE_HEIGHT * len(key)
        fig = Figure(figsize=(10, height), layout="constrained")
        axes = list(fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0])
        fig.suptitle(title)
    else:
        axes, fig = [ax], ax.get_figure()
        if fig is None:
            raise ValueError("ax= must belong to a figure")
    fleet = fleet_values(its, signals) if fleet_label is not None else {}
    tags: list[list[Annotation]] = []
    for axis, name in zip(axes, names, strict=True):
        mine = [p for p in points if p.series == name]
        if len(its) == 1:
            _bars(axis, its[0], mine, fleet.get((name, its[0].index)), fleet_label)
        else:
            _lines(axis, its, mine, {i: v for (s, i), v in fleet.items() if s == name}, fleet_label)
            tags.append(_mark_versions(axis, key))
        axis.set_ylabel(axis_label(name, onboard))
        axis.grid(alpha=0.3)
        axis.set_axisbelow(True)
    axes[-1].set_xlabel("client" if len(its) == 1 else "iteration")
    _legends(fig, axes, key, own=ax is None)  # first: the legends take room from the axes
    if any(tags):
        _stack_tags(fig, axes, tags)
    return fig


def _bars(
    axis: Axes, it: IterationResult, points: list[Point], fleet: float | None, fleet_label: str | None
) -> None:
    values = {p.client: p.value for p in points}
    kept_out = set(it.discarded) | set(it.failed) | set(it.missing) | set(it.late)
    clients = sorted(set(values) | set(it.onboard) | kept_out)
    at = {cid: n for n, cid in enumerate(clients)}
    axis.bar(
        [at[c] for c in values], list(values.values()), width=0.7, color="tab:blue", label="client value"
    )
    without = [at[c] for c in clients if c not in values]
    if without:
        axis.plot(without, [0.0] * len(without), "x", color="dimgray", label="no kept value")
    if fleet is not None:
        axis.axhline(fleet, color="black", linewidth=2, alpha=0.7, label=f"fleet ({fleet_label})")
    axis.axhline(0.0, color="dimgray", linewidth=0.6)
    step = math.ceil(len(clients) / MAX_CLIENT_TICKS)
    shown = clients[::step]
    axis.set_xticks([at[c] for c in shown], [str(c) for c in shown])
    if len(shown) > ROTATE_CLIENT_TICKS:
        axis.tick_params(axis="x", labelrotation=90, labelsize=7)
    axis.set_xlim(-0.6, len(clients) - 0.4)


def _lines(
    axis: Axes,
    its: list[IterationResult],
    points: list[Point],
    fleet: dict[int, float],
    fleet_label: str | None,
) -> None:
    from matplotlib.ticker import MaxNLocator

    indices = [it.index for it in its]
    clients = sorted({p.client for p in points})
    values = {(p.client, p.iteration): p.value for p in points}
    many = len(clients) > MAX_CLIENT_ENTRIES
    for n, cid in enumerate(clients):
        ys = [values.get((cid, i), math.nan) for i in indices]  # NaN breaks the line: no value
        if many:
            label = f"{len(clients)} clients (a line each)" if n == 0 else "_nolegend_"
            axis.plot(
                indices, ys, color="tab:blue", marker=".", markersize=2, linewidth=0.8, alpha=0.4, label=label
            )
        else:
            axis.plot(indices, ys, marker="o", markersize=3, linewidth=1, alpha=0.8, label=f"client {cid}")
    if fleet:
        xs = sorted(fleet)
        axis.plot(
            xs,
            [fleet[i] for i in xs],
            color="black",
            linewidth=2.5,
            alpha=0.7,
            label=f"fleet ({fleet_label})",
        )
    failed = [it.index for it in its if it.status == "failed"]
    for n, i in enumerate(failed):
        label = "failed iteration" if n == 0 else "_nolegend_"
        axis.axvspan(i - 0.5, i + 0.5, color="tab:red", alpha=0.08, linewidth=0, label=label)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def _mark_versions(axis: Axes, key: list[tuple[int, str]]) -> list[Annotation]:
    """A dashed red line where the code changed and a tag ``vN`` per version above the axes."""
    tags = []
    for n, (index, _) in enumerate(key):
        x = index if n == 0 else index - 0.5
        if n:
            axis.axvline(x, color="tab:red", linestyle="--", linewidth=1.2)
        tag = axis.annotate(
            f"v{n + 1}",
            xy=(x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color="tab:red" if n else "dimgray",
            annotation_clip=False,
        )
        tags.append(tag)
    return tags


def _stack_tags(fig: Figure, axes: list[Axes], tags: list[list[Annotation]]) -> None:
    """Measure the tags and move each one that would touch an earlier one up a row; twice,
    since moving tags lets the layout move the axes."""
    for _ in range(2):
        fig.draw_without_rendering()
        for axis, row_tags in zip(axes, tags, strict=False):
            ends: list[float] = []  # per row, the right edge of its last tag (display units)
            for tag in sorted(row_tags, key=lambda t: t.xy[0]):
                box = tag.get_window_extent()
                gap = 2 * fig.dpi / 72
                row = next((r for r, end in enumerate(ends) if box.x0 > end + gap), len(ends))
                ends[row : row + 1] = [box.x1]
                tag.xyann = (0, 2 + row * TAG_ROW)
            if ends and axis.get_title():  # a title the caller set on their axes: above the tags
                axis.set_title(axis.get_title(), pad=6 + len(ends) * TAG_ROW)


def _legends(fig: Figure, axes: list[Axes], key: list[tuple[int, str]], own: bool) -> None:
    """Clients, fleet and failed iterations in one legend right of the axes; the version key
    under the figure (own figure) or under the x axis (the caller's axes)."""
    from matplotlib.lines import Line2D

    entries: dict[str, Artist] = {}
    for axis in axes:
        handles, labels = axis.get_legend_handles_labels()
        for handle, label in zip(handles, labels, strict=True):
            entries.setdefault(label, handle)
    rank = {"no kept value": 1, "failed iteration": 3}
    order = sorted(entries, key=lambda label: 2 if label.startswith("fleet (") else rank.get(label, 0))
    entries = {label: entries[label] for label in order}
    key_handles: list[Artist] = [
        Line2D([], [], color="tab:red", linestyle="--") if n else Line2D([], [], linestyle="none")
        for n in range(len(key))
    ]
    key_labels = [line for _, line in key]
    style: dict[str, Any] = {"fontsize": 8, "frameon": False}
    if own:
        if entries:
            fig.legend(list(entries.values()), list(entries), loc="outside right upper", **style)
        if key:
            fig.legend(key_handles, key_labels, loc="outside lower left", title="code versions", **style)
        return
    axis = axes[0]
    if entries:
        right = axis.legend(
            list(entries.values()), list(entries), loc="upper left", bbox_to_anchor=(1.01, 1.0), **style
        )
        axis.add_artist(right)
        right.set_clip_on(False)  # else it is taken for clipped to the axes and left out of the layout
    if key:
        _key_under(
            fig, axis, axis.legend(key_handles, key_labels, loc="upper left", title="code versions", **style)
        )


def _key_under(fig: Figure, axis: Axes, legend: Legend) -> None:
    """Anchor the version key under the x axis' tick labels and label, measured once drawn."""
    from matplotlib.transforms import offset_copy

    fig.draw_without_rendering()
    decorated = axis.xaxis.get_tightbbox()
    below = axis.get_window_extent().y0 - decorated.y0 if decorated is not None else 0.0  # display units
    shift = -(below * 72 / fig.dpi + 4)
    legend.set_bbox_to_anchor(
        (0.0, 0.0), transform=offset_copy(axis.transAxes, fig=fig, y=shift, units="points")
    )
