"""A Result's text, dict and HTML with failed iterations, many failures and folded iterations;
the notebook progress text (built from data: no Redis, no workers)."""

from __future__ import annotations

import json
from typing import Any

from oodida_core.protocol.wire import AssignmentRecord, FoldedIterations, IterationResult, NumberSummary
from oodida_user import Result
from oodida_user.display import result_html, rounded, status_html
from oodida_user.progress import TextProgress, progress_text
from oodida_user.results import IterationCounts, folded_line

V1 = "sha256:" + "a" * 64
V2 = "sha256:" + "b" * 64


def iteration(index: int, **kw: Any) -> IterationResult:
    onboard = kw.pop("onboard", {1: 1.0, 2: 2.0})
    return IterationResult(
        index=index,
        onboard=onboard,
        versions=kw.pop("versions", {cid: V2 for cid in onboard}),
        started_at=100.0 + index,
        finished_at=100.25 + index,
        **kw,
    )


def failed_iteration(index: int, clients: int) -> IterationResult:
    why = {cid: f"ZeroDivisionError: division by zero (client {cid})" for cid in range(1, clients + 1)}
    return iteration(index, onboard={}, versions={}, failed=why, status="failed")


FOLDED = FoldedIterations(
    count=8,
    first=0,
    last=7,
    started_at=50.0,
    finished_at=99.0,
    kept=14,
    discarded=1,
    missing=1,
    failed=2,
    failed_iterations=1,
    values={"speed": NumberSummary(n=7, min=10.0, max=40.0, sum=175.0)},
    other_values=1,
    versions={V1: 15, "builtin": 2},
)


def record(**kw: Any) -> AssignmentRecord:
    base: dict[str, Any] = {
        "id": "f0f0f0",
        "user": "u",
        "status": "done",
        "spec": {"name": "Folded <speed>", "signals": "speed", "onboard": "custom", "offboard": "average"},
        "clients": (1, 2, 3, 4, 5, 6, 7),
        "created_at": 1.0,
    }
    return AssignmentRecord(**(base | kw))


def folded_result(**kw: Any) -> Result:
    its = [iteration(8, value=1.5), failed_iteration(9, 7), iteration(10, value=2.5)]
    return Result.build(record(folded=FOLDED, failed_iterations=2, **kw), its)


def test_build_takes_the_folded_summary_and_totals_count_folded_and_kept_iterations() -> None:
    r = folded_result()
    assert r.folded == FOLDED
    assert r.iterations_done == 11
    assert r.totals() == {
        "iterations": 11,
        "folded_iterations": 8,
        "kept_iterations": 3,
        "failed_iterations": 2,
        "kept": 14 + 4,
        "discarded": 1,
        "missing": 1,
        "failed": 2 + 7,
        "late": 0,
    }
    assert Result.build(record(), [iteration(0)]).folded is None
    assert Result.build(record(folded=FoldedIterations()), []).folded is None  # nothing folded yet


def test_counts_carry_each_iterations_status() -> None:
    counts = folded_result().counts
    assert [c.status for c in counts] == ["ok", "failed", "ok"]
    assert counts[1] == IterationCounts(9, 0, 0, 0, 7, "complete", "failed")
    assert counts[1].to_dict()["status"] == "failed"


def test_summary_marks_failed_iterations_and_says_how_many_failures_it_left_out() -> None:
    text = folded_result().summary()
    lines = text.splitlines()
    assert lines[0] == "assignment f0f0f0 (Folded <speed>): done, 11 iteration(s) on 7 client(s)"
    assert "  in all: kept 18, discarded 1, missing 1, failed 9; 2 failed iteration(s)" in lines
    assert "  iteration 9: FAILED — kept 0, discarded 0, missing 0, failed 7, 0.25s (complete)" in lines
    shown = [line for line in lines if line.startswith("    client ") and " failed: " in line]
    assert [line.split()[1] for line in shown] == ["1", "2", "3", "4", "5"]
    assert "    and 2 more failed client(s)" in lines
    assert "iteration 8: kept 2" in text and "iteration 8: FAILED" not in text
    every = folded_result().summary(failures=10)
    assert "more failed client(s)" not in every and "client 7 failed: " in every


def test_six_failures_are_five_lines_and_one_more_never_a_silent_sixth() -> None:
    r = Result.build(record(), [failed_iteration(0, 6)])
    text = r.summary()
    assert text.count(" failed: ") == 5 and "and 1 more failed client(s)" in text


def test_summary_shows_the_folded_range_value_statistics_versions_and_the_error() -> None:
    text = folded_result(status="failed", error="every iteration failed").summary()
    assert "  error: every iteration failed" in text.splitlines()
    line = next(line for line in text.splitlines() if "folded" in line)
    assert line.startswith(
        "  iterations 0-7 folded: 8 iteration(s), kept 14, discarded 1, missing 1, failed 2"
    )
    assert "1 failed iteration(s)" in line
    assert "speed min 10 mean 25 max 40 (n=7)" in line
    assert "1 other value(s)" in line
    assert f"versions {V1[:19]} (15), builtin (2)" in line
    assert text.index("folded") < text.index("iteration 8:")


def test_folded_line_names_a_plain_numbers_key_value() -> None:
    f = FoldedIterations(count=2, first=3, last=4, values={"": NumberSummary(n=2, min=1.0, max=3.0, sum=4.0)})
    assert folded_line(f) == (
        "iterations 3-4 folded: 2 iteration(s), kept 0, discarded 0, missing 0, failed 0; "
        "value min 1 mean 2 max 3 (n=2)"
    )


def test_to_dict_holds_the_folded_summary_and_each_iterations_status_as_json() -> None:
    data = folded_result().to_dict()
    assert data["folded"]["count"] == 8 and data["folded"]["values"]["speed"]["max"] == 40.0
    assert [i["status"] for i in data["iterations"]] == ["ok", "failed", "ok"]
    json.dumps(data, allow_nan=False)
    assert Result.build(record(), []).to_dict()["folded"] is None


def test_html_colours_the_status_highlights_failed_rows_and_folds_first() -> None:
    page = folded_result(status="failed", error="<every> iteration failed")._repr_html_()
    assert "class='oodida-status-failed' style='color:#b00'>failed</b>" in page
    assert "error: &lt;every&gt; iteration failed" in page and "<every>" not in page
    assert page.count("class='oodida-failed'") == 1  # iteration 9's row
    failed_row = page[page.index("class='oodida-failed'") :]
    assert failed_row.index("<td>9</td><td>failed</td>") < failed_row.index("client 1 failed: ")
    assert "and 2 more failed client(s)" in page and "client 6 failed" not in page
    assert page.index("iterations 0-7 folded: 8 iteration(s)") < page.index("<td>8</td>")
    assert "Folded &lt;speed&gt;" in page
    assert "2 failed iteration(s)" in page and "11 iteration(s) on 7 client(s)" in page
    done = Result.build(record(), [iteration(0, value=1.0)])
    assert "oodida-failed" not in done._repr_html_() and status_html("done") in done._repr_html_()


def test_html_rounds_float_values_to_six_significant_digits() -> None:
    it = iteration(0, value={"speed": 14.270251851202994, "hist": [0.1 + 0.2, 3], "n": None})
    page = result_html(Result.build(record(), [it]))
    assert "{&quot;speed&quot;: 14.2703, &quot;hist&quot;: [0.3, 3], &quot;n&quot;: null}" in page
    assert rounded(float("nan")) != rounded(float("nan")) and rounded(True) is True


def test_html_lists_client_failures_of_an_iteration_that_still_has_a_value() -> None:
    it = iteration(0, value=1.0, failed={3: "ValueError: <bad>"})
    page = result_html(Result.build(record(), [it]))
    assert "oodida-failed'" not in page  # the iteration is ok: not highlighted
    assert "client 3 failed: &quot;ValueError: &lt;bad&gt;&quot;" in page


def test_notebook_progress_text_counts_iterations_and_the_current_iterations_answers() -> None:
    assert progress_text("Speed", 2, 5, 3.14, "iteration 2: 4/6 clients answered") == (
        "Speed: 2/5 iteration(s) [3.1s], iteration 2: 4/6 clients answered"
    )
    assert progress_text("", 0, None, 0.0) == "0/? iteration(s) [0.0s]"


def test_text_progress_updates_one_display_in_place() -> None:
    shown: list[tuple[str, dict[str, str]]] = []

    class Handle:
        def update(self, data: dict[str, str], raw: bool = False) -> None:
            assert raw
            shown.append(("update", data))

    def show(data: dict[str, str], raw: bool = False, display_id: bool = False) -> Handle:
        assert raw and display_id
        shown.append(("display", data))
        return Handle()

    bar = TextProgress(3, "Speed", show=show)
    bar.set_postfix_str("iteration 0: 2/4 clients answered")
    bar.update(1)
    bar.close()
    assert [kind for kind, _ in shown] == ["display", "update", "update", "update"]
    assert shown[0][1]["text/plain"].startswith("Speed: 0/3 iteration(s) [")
    last = shown[-1][1]
    assert last["text/plain"].startswith("Speed: 1/3 iteration(s) [")
    assert last["text/plain"].endswith("], iteration 0: 2/4 clients answered")
    assert "<progress value='1' max='3'></progress>" in last["text/html"]
    assert "<progress" not in TextProgress(None, "Stream", show=show).bundle()["text/html"]
