"""A Result built from data: rows, DataFrame, figure, text and HTML (no Redis, no workers)."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from oodida_core.protocol.wire import IterationResult
from oodida_user import Result
from oodida_user.analysis import split_by_signal, version_changes
from oodida_user.progress import AssignmentProgress, ProgressBar

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def iteration(index: int, onboard: dict[int, Any], version: str = "builtin", **kw: Any) -> IterationResult:
    return IterationResult(
        index=index,
        value=kw.pop("value", None),
        onboard=onboard,
        versions={cid: version for cid in onboard} | kw.pop("versions", {}),
        started_at=100.0 + index,
        finished_at=100.5 + index,
        **kw,
    )


def result(iterations: list[IterationResult], **spec: Any) -> Result:
    return Result(
        id="a1b2c3",
        status="done",
        spec={"name": "Speed <check>", "signals": ["speed", "rpm"], "offboard": "average", **spec},
        clients=(1, 2, 3),
        iterations=iterations,
    )


def builtin_average() -> Result:
    its = [
        iteration(
            i,
            {cid: {"speed": 10.0 * cid + i, "rpm": 1000.0 * cid} for cid in (1, 2, 3)},
            value={"speed": 20.0 + i, "rpm": 2000.0},
        )
        for i in range(3)
    ]
    return result(its)


def replaced_mid_assignment() -> Result:
    """A custom single-signal module, v1 for iterations 0-1, v2 from iteration 2 on; in
    iteration 2 client 3 still ran v1 and was discarded by the vote."""
    its = [iteration(i, {1: 0.1 * i, 2: 0.2 * i, 3: 0.3 * i}, V1, value=0.2 * i) for i in range(2)]
    its.append(iteration(2, {1: 5.0, 2: 6.0}, V2, value=5.5, versions={3: V1}, discarded={3: "minority"}))
    its.append(iteration(3, {1: 7.0, 2: 8.0, 3: 9.0}, V2, value=8.0))
    return result(its, signals="speed", onboard="custom")


def test_builtin_values_keyed_by_signal_give_one_row_per_client_iteration_and_signal() -> None:
    rows = builtin_average().rows()
    assert len(rows) == 3 * 3 * 2
    assert rows[0].__dict__ == {
        "client": 1,
        "iteration": 0,
        "signal": "speed",
        "value": 10.0,
        "version": "builtin",
    }
    assert {(r.client, r.iteration, r.signal) for r in rows} == {
        (c, i, s) for c in (1, 2, 3) for i in range(3) for s in ("speed", "rpm")
    }


def test_values_not_keyed_by_signal_stay_whole_under_the_joined_signal_names() -> None:
    model = {"weights": [0.1, 0.2], "loss": 0.5}
    assert split_by_signal(model, ["speed", "rpm"]) == [("speed,rpm", model)]
    assert split_by_signal([1.0, 2.0], ["speed"]) == [("speed", [1.0, 2.0])]
    assert split_by_signal({"rpm": 1, "speed": 2}, ["speed", "rpm"]) == [("speed", 2), ("rpm", 1)]
    assert split_by_signal({}, ["speed"]) == [("speed", {})]


def test_to_frame_has_the_five_columns_and_keeps_lists_as_objects() -> None:
    df = builtin_average().to_frame()
    assert list(df.columns) == ["client", "iteration", "signal", "value", "version"]
    assert len(df) == 18
    speed = df[(df.signal == "speed") & (df.iteration == 2)].set_index("client")["value"]
    assert speed.to_dict() == {1: 12.0, 2: 22.0, 3: 32.0}

    hits = [{"index": 4, "value": 130.0}]
    df = result([iteration(0, {1: {"speed": hits}, 2: {"speed": []}})], signals="speed").to_frame()
    assert df.set_index("client")["value"].to_dict() == {1: hits, 2: []}


def test_to_frame_names_the_extra_to_install_without_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"pip install 'oodida\[analysis\]'"):
        builtin_average().to_frame()


def test_rows_carry_the_version_and_changes_are_found_where_the_code_changed() -> None:
    r = replaced_mid_assignment()
    assert [(row.iteration, row.version) for row in r.rows() if row.client == 1] == [
        (0, V1),
        (1, V1),
        (2, V2),
        (3, V2),
    ]
    assert version_changes(r.iterations) == [(0, V1[:19]), (2, V2[:19])]
    assert version_changes(builtin_average().iterations) == [(0, "builtin")]


def test_plot_draws_a_line_per_client_the_fleet_and_marks_the_new_version(tmp_path: Path) -> None:
    fig = replaced_mid_assignment().plot()
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:4] == ["client 1", "client 2", "client 3", "fleet (average)"]
    vertical = [line for line in ax.get_lines() if list(line.get_xdata()) == [1.5, 1.5]]
    assert len(vertical) == 1, "one dashed line between iteration 1 and 2"
    assert [t.get_text() for t in ax.texts] == ["v1", "v2"]  # tags; the key under the figure
    (key,) = [legend for legend in fig.legends if legend.get_title().get_text() == "code versions"]
    assert [t.get_text() for t in key.get_texts()] == [
        f"v1  iterations 0-1: {V1[:19]}",
        f"v2  iterations 2-3: {V2[:19]}",
    ]
    client3 = ax.get_lines()[2]
    assert list(client3.get_xdata()) == [0, 1, 2, 3]
    assert [y == y for y in client3.get_ydata()] == [True, True, False, True]  # discarded in 2: a gap
    fig.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000


def test_plot_has_one_panel_per_signal_and_draws_into_given_axes() -> None:
    r = builtin_average()
    fig = r.plot()
    assert [ax.get_ylabel() for ax in fig.axes] == ["speed [km/h]", "rpm [1/min]"]
    assert not fig.axes[0].texts, "built-in code throughout: nothing to mark"
    from matplotlib.figure import Figure

    own = Figure().subplots()
    assert r.plot(signal="rpm", ax=own) is own.figure
    assert own.get_ylabel() == "rpm [1/min]"
    with pytest.raises(ValueError, match="pass signal="):
        r.plot(ax=own)


def test_plot_says_why_when_nothing_is_numeric() -> None:
    r = result([iteration(0, {1: {"speed": [{"index": 1, "value": 130.0}]}})], signals="speed")
    with pytest.raises(ValueError, match="to_frame"):
        r.plot()


def test_text_and_html_renderings_are_readable_and_escaped() -> None:
    r = replaced_mid_assignment()
    text = str(r)
    assert "assignment a1b2c3 (Speed <check>): done, 4 iteration(s) on 3 client(s)" in text
    assert f"iteration 2: kept 2, discarded 1, missing 0, failed 0, 0.50s (complete), code {V2[:19]}" in text
    assert repr(r) == "<Result a1b2c3 'Speed <check>' done: 4 iteration(s) on 3 client(s)>"
    page = r._repr_html_()
    assert "Speed &lt;check&gt;" in page and "<check>" not in page
    assert page.count("<tr>") == 1 + 4  # header and one row per iteration
    assert f"<td>{V2[:19]}</td>" in page
    many = result([iteration(i, {1: 1.0}) for i in range(50)], signals="speed")
    page = many._repr_html_(max_rows=10)
    assert page.count("<tr>") == 1 + 10 + 1 and "... 40 more ..." in page


def test_progress_snapshot_reads_as_a_sentence_and_the_bar_stays_off_without_a_terminal() -> None:
    p = AssignmentProgress(status="running", iterations_done=2, iterations=5, clients=4, answered=3)
    assert str(p) == "running: 2/5 iteration(s), 3/4 client(s) answered iteration 2"
    assert str(AssignmentProgress("running", 0, None, 4, None)) == "running: 0/? iteration(s)"
    with ProgressBar(5, enabled=True) as bar:  # pytest captures stderr: not a terminal
        assert not bar.active
        bar.iteration_done()
        bar.answered(3, 4)
        assert bar.done == 1
