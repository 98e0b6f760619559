"""Result.plot() drawn from data (no Redis, no workers) on the Agg canvas: each kind of figure has
units, integer or client ticks, a title, and no two pieces of text on top of each other."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from oodida_core.protocol.wire import IterationResult
from oodida_user import Result, analysis
from oodida_user.plots import MAX_CLIENT_ENTRIES, axis_label, numbers

matplotlib = pytest.importorskip("matplotlib")

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.legend import Legend  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.text import Annotation, Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402


def xdata(line: Line2D) -> list[float]:
    return [float(v) for v in np.asarray(line.get_xdata(), dtype=float)]


def ydata(line: Line2D) -> list[float]:
    return [float(v) for v in np.asarray(line.get_ydata(), dtype=float)]


def tag_heights(ax: Axes) -> set[float]:
    return {t.xyann[1] for t in ax.texts if isinstance(t, Annotation)}


def version(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


@pytest.fixture(autouse=True)
def matplotlib_config_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    yield


def iteration(index: int, onboard: dict[int, Any], code: str = "builtin", **kw: Any) -> IterationResult:
    return IterationResult(
        index=index,
        value=kw.pop("value", None),
        onboard=onboard,
        versions={cid: code for cid in onboard},
        started_at=100.0 + index,
        finished_at=100.5 + index,
        **kw,
    )


def result(iterations: list[IterationResult], **spec: Any) -> Result:
    clients = sorted({c for it in iterations for c in it.onboard})
    return Result(
        id="a1b2c3",
        status="done",
        spec={"name": "Fleet speed", "signals": "speed", "onboard": "average", "offboard": "average", **spec},
        clients=tuple(clients),
        iterations=iterations,
    )


# -- the overlap check ---------------------------------------------------------------------------


def drawn_texts(fig: Figure) -> list[Text]:
    """Every piece of text the figure shows, drawn on the Agg canvas: titles, axis labels, the
    tick labels in view, annotations, legend entries and titles."""
    FigureCanvasAgg(fig).draw()
    texts: list[Text] = []
    suptitle = getattr(fig, "_suptitle", None)
    candidates: list[Text] = [suptitle] if suptitle is not None else []
    candidates += list(fig.texts)
    legends = list(fig.legends)
    for ax in fig.axes:
        candidates += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for view, axis in ((ax.get_xlim(), ax.xaxis), (ax.get_ylim(), ax.yaxis)):
            low, high = sorted(view)
            ticks = axis.get_major_ticks(len(axis.get_majorticklocs()))
            candidates += [
                label for t in ticks if low <= t.get_loc() <= high for label in (t.label1, t.label2)
            ]
        legends += [c for c in ax.get_children() if isinstance(c, Legend)]
    for legend in legends:
        candidates += [*legend.get_texts(), legend.get_title()]
    for text in candidates:
        if text.get_visible() and text.get_text().strip() and text not in texts:
            texts.append(text)
    return texts


def intersect(a: Bbox, b: Bbox, tolerance: float = 0.5) -> bool:
    """The two boxes share an area wider and taller than ``tolerance`` pixels."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tolerance and min(a.y1, b.y1) - max(a.y0, b.y0) > tolerance


def overlapping_texts(fig: Figure) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent()) for t in drawn_texts(fig)]
    return [(a, b) for (a, box_a), (b, box_b) in combinations(boxes, 2) if intersect(box_a, box_b)]


def texts_outside(fig: Figure) -> list[str]:
    """Text that would be cut off when the figure is saved as it is."""
    whole = fig.bbox
    return [
        t.get_text()
        for t in drawn_texts(fig)
        if (box := t.get_window_extent()).x0 < whole.x0 - 1
        or box.x1 > whole.x1 + 1
        or box.y0 < whole.y0 - 1
        or box.y1 > whole.y1 + 1
    ]


def assert_readable(fig: Figure) -> None:
    assert overlapping_texts(fig) == []
    assert texts_outside(fig) == []


def test_the_overlap_check_finds_text_drawn_over_other_text_and_nothing_else() -> None:
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.set_title("a title")
    ax.annotate(
        "on the title", xy=(0.5, 1.0), xycoords="axes fraction", xytext=(0, 8), textcoords="offset points"
    )
    ax.text(0.1, 0.5, "apart", transform=ax.transAxes)
    assert overlapping_texts(fig) == [("a title", "on the title")]
    ax.texts[0].remove()
    assert overlapping_texts(fig) == []
    ax.text(0.0, 1.2, "beyond the top", transform=ax.transAxes)
    assert texts_outside(fig) == ["beyond the top"]


# -- one iteration -------------------------------------------------------------------------------


def tick_texts(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def title_of(fig: Figure) -> str:
    suptitle = getattr(fig, "_suptitle", None)
    return suptitle.get_text() if suptitle is not None else ""


def legend_texts(fig: Figure) -> list[str]:
    legends = list(fig.legends) + [c for ax in fig.axes for c in ax.get_children() if isinstance(c, Legend)]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def test_one_iteration_draws_a_bar_per_client_labelled_by_client_with_the_unit() -> None:
    fig = result([iteration(0, {c: 10.0 * c for c in range(1, 7)}, value=35.0)]).plot()
    (ax,) = fig.axes
    assert len(ax.patches) == 6
    assert [p.get_height() for p in ax.patches if isinstance(p, Rectangle)] == [
        10.0,
        20.0,
        30.0,
        40.0,
        50.0,
        60.0,
    ]
    assert tick_texts(ax) == ["1", "2", "3", "4", "5", "6"]
    assert ax.get_xlabel() == "client"
    assert ax.get_ylabel() == "speed [km/h]"
    assert title_of(fig) == "Fleet speed (a1b2c3): on-board values per client"
    fleet = [line for line in ax.get_lines() if line.get_label() == "fleet (average)"]
    assert len(fleet) == 1 and ydata(fleet[0]) == [35.0, 35.0]
    assert_readable(fig)


def test_one_iteration_of_several_signals_has_a_panel_each_and_marks_clients_without_a_value() -> None:
    its = [
        iteration(
            0,
            {c: {"speed": 10.0 * c, "engine_temp": 80.0 + c} for c in (1, 2, 3)},
            value={"speed": 20.0, "engine_temp": 82.0},
            missing=(4,),
        )
    ]
    fig = result(its, signals=["speed", "engine_temp"]).plot()
    assert [ax.get_ylabel() for ax in fig.axes] == ["speed [km/h]", "engine_temp [°C]"]
    assert tick_texts(fig.axes[-1]) == ["1", "2", "3", "4"]
    assert [len(ax.patches) for ax in fig.axes] == [3, 3]
    no_value = [line for line in fig.axes[0].get_lines() if line.get_label() == "no kept value"]
    assert xdata(no_value[0]) == [3]  # client 4's place
    assert "no kept value" in legend_texts(fig)
    assert_readable(fig)
    own = Figure(figsize=(6, 3), layout="constrained")
    r = result(its, signals=["speed", "engine_temp"])
    assert r.plot(signal="engine_temp", ax=own.subplots()) is own
    assert own.axes[0].get_ylabel() == "engine_temp [°C]" and tick_texts(own.axes[0]) == ["1", "2", "3", "4"]
    assert_readable(own)


def test_fifty_clients_in_one_iteration_keep_every_client_id_readable() -> None:
    fig = result([iteration(0, {c: float(c) for c in range(1, 51)}, value=25.5)]).plot()
    (ax,) = fig.axes
    assert tick_texts(ax) == [str(c) for c in range(1, 51)]
    assert_readable(fig)


# -- several iterations --------------------------------------------------------------------------


def test_iterations_run_along_an_integer_axis_and_a_missing_value_breaks_the_clients_line() -> None:
    its = [iteration(i, {1: 1.0 + i, 2: 2.0 + i} if i != 3 else {1: 4.0}, value=1.5 + i) for i in range(7)]
    fig = result(its).plot()
    (ax,) = fig.axes
    assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "speed [km/h]"
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks)
    client2 = next(line for line in ax.get_lines() if line.get_label() == "client 2")
    assert math.isnan(ydata(client2)[3])
    assert legend_texts(fig) == ["client 1", "client 2", "fleet (average)"]
    assert_readable(fig)


def test_fifty_clients_share_one_legend_entry_outside_the_axes() -> None:
    its = [
        iteration(i, {c: float(c + i) for c in range(1, 51) if (c + i) % 7}, value=25.0 + i) for i in range(8)
    ]
    fig = result(its).plot()
    (ax,) = fig.axes
    assert len([line for line in ax.get_lines() if line.get_label() != "fleet (average)"]) == 50
    assert legend_texts(fig) == ["50 clients (a line each)", "fleet (average)"]
    assert MAX_CLIENT_ENTRIES < 50
    (legend,) = fig.legends
    FigureCanvasAgg(fig).draw()
    assert not intersect(legend.get_window_extent(), ax.get_window_extent())
    assert_readable(fig)


def test_collect_draws_no_fleet_line_and_average_does() -> None:
    its = [
        iteration(i, {1: {"speed": 1.0 + i, "rpm": 900.0}, 2: {"speed": 3.0, "rpm": 1100.0}}, value=v)
        for i, v in enumerate([{1: {"speed": 1.0}, 2: {"speed": 3.0}}] * 3)
    ]
    collected = result(its, signals=["speed", "rpm"], offboard="collect").plot()
    assert [ax.get_ylabel() for ax in collected.axes] == ["speed [km/h]", "rpm [1/min]"]
    assert not any(
        str(line.get_label()).startswith("fleet") for ax in collected.axes for line in ax.get_lines()
    )
    assert_readable(collected)
    averaged = [it.model_copy(update={"value": {"speed": 2.0, "rpm": 1000.0}}) for it in its]
    fig = result(averaged, signals=["speed", "rpm"]).plot()
    fleet = [line for ax in fig.axes for line in ax.get_lines() if line.get_label() == "fleet (average)"]
    assert [ydata(line) for line in fleet] == [[2.0] * 3, [1000.0] * 3]
    assert_readable(fig)


# -- code versions -------------------------------------------------------------------------------


def tags(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_a_swap_is_a_dashed_line_tagged_v2_and_the_key_names_both_versions() -> None:
    its = [iteration(i, {1: 0.1 * i, 2: 0.2 * i}, version(1), value=0.15 * i) for i in range(2)]
    its += [iteration(i, {1: 1.0 * i, 2: 2.0 * i}, version(2), value=1.5 * i) for i in range(2, 4)]
    fig = result(its, onboard="custom").plot()
    (ax,) = fig.axes
    assert tags(ax) == ["v1", "v2"]
    assert [xdata(line) for line in ax.get_lines() if line.get_linestyle() == "--"] == [[1.5, 1.5]]
    assert f"v1  iterations 0-1: {version(1)[:19]}" in legend_texts(fig)
    assert f"v2  iterations 2-3: {version(2)[:19]}" in legend_texts(fig)
    assert ax.get_ylabel() == "speed [km/h]"
    assert_readable(fig)


def test_six_version_changes_in_ten_iterations_stay_readable() -> None:
    codes = [1, 2, 3, 3, 4, 5, 6, 6, 7, 7]
    its = [iteration(i, {1: 1.0 * i, 2: 2.0 * i}, version(codes[i]), value=1.5 * i) for i in range(10)]
    fig = result(its, onboard="custom").plot()
    (ax,) = fig.axes
    assert tags(ax) == [f"v{n}" for n in range(1, 8)]
    assert len([line for line in ax.get_lines() if line.get_linestyle() == "--"]) == 6
    assert_readable(fig)


def test_changes_in_adjacent_iterations_stack_their_tags_in_rows() -> None:
    """Seven changes in consecutive iterations of a hundred, with off-board versions: in one row
    the tags would touch."""

    def at(i: int) -> IterationResult:
        off = {"offboard_version": version(9)} if i >= 13 else {}
        return iteration(i, {1: 1.0 * i, 2: 2.0 * i}, version(min(max(i - 9, 1), 8)), value=1.5 * i, **off)

    r = result([at(i) for i in range(100)], onboard="custom")
    fig = r.plot()
    (ax,) = fig.axes
    assert len(ax.texts) == 8
    assert len(tag_heights(ax)) > 1, "some tags moved up a row"
    assert_readable(fig)

    own = Figure(figsize=(6, 4), layout="constrained")
    mine = own.subplots()
    mine.set_title("my title")
    assert r.plot(ax=mine) is own
    assert len(tag_heights(mine)) > 1
    assert_readable(own)  # the caller's title goes above the tags, the key under the axis


# -- series and units ----------------------------------------------------------------------------


def test_a_custom_dict_of_numbers_gets_a_panel_per_key_named_without_a_unit() -> None:
    its = [iteration(i, {1: {"loss": 1.0 / (i + 1), "n": 300, "w": [0.1]}}, version(1)) for i in range(3)]
    fig = result(its, onboard="custom", offboard="collect").plot()
    assert [ax.get_ylabel() for ax in fig.axes] == ["speed · loss", "speed · n"]
    assert_readable(fig)
    assert numbers("speed", {"w": [1.0], "ok": True}) == []


def test_the_unit_follows_the_onboard_method_and_unknown_series_have_none() -> None:
    assert axis_label("rpm") == "rpm [1/min]"
    assert axis_label("acceleration", "average") == "acceleration [m/s²]"
    assert axis_label("speed", "variance") == "speed [(km/h)²]"
    assert axis_label("speed", "count") == "speed (count of samples)"
    assert axis_label("speed,rpm") == "speed,rpm"
    its = [iteration(i, {1: {"speed": 4.0 + i}}) for i in range(2)]
    fig = analysis.plot("t", its, ["speed"], "average", onboard="variance")
    assert fig.axes[0].get_ylabel() == "speed [(km/h)²]"


def test_failed_iterations_are_shaded_and_named_in_the_legend() -> None:
    its = [iteration(i, {1: 1.0 + i}, value=1.0 + i) for i in range(4)]
    its[2] = iteration(2, {}, status="failed", failed={1: "ZeroDivisionError"})
    fig = result(its).plot()
    assert "failed iteration" in legend_texts(fig)
    assert_readable(fig)


def test_a_saved_figure_is_a_png(tmp_path: Path) -> None:
    fig = result([iteration(0, {1: 3.0, 2: 4.0}, value=3.5)]).plot()
    fig.savefig(tmp_path / "r.png", dpi=80)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
