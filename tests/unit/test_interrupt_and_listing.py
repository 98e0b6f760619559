"""What Ctrl-C says (library and command line) and how ``oodida list`` formats its table."""

from __future__ import annotations

import pytest

from oodida_user._listing import age, progress, table
from oodida_user._waiting import interrupted_line
from oodida_user.assignment import AssignmentInterrupted, interrupted_message

AID = "0123456789abcdef"


def test_a_running_assignment_is_named_with_the_call_that_cancels_it() -> None:
    text = interrupted_message(AID, "running")
    assert text == (
        f"assignment {AID} is still running (Ctrl-C stopped only the waiting): "
        f'o.assignment("{AID}").cancel() stops it'
    )


@pytest.mark.parametrize("status", ["pending", "running", "done", "failed", "cancelled", None])
@pytest.mark.parametrize("cancelling", [False, True])
def test_every_interrupt_message_is_one_line_naming_the_assignment(
    status: str | None, cancelling: bool
) -> None:
    exc = AssignmentInterrupted(AID, status, cancelling=cancelling)
    assert isinstance(exc, KeyboardInterrupt)
    for text in (str(exc), interrupted_line(exc)):
        assert "\n" not in text and AID in text
    if status in ("done", "failed", "cancelled"):
        assert "cancel()" not in str(exc) and "oodida cancel" not in interrupted_line(exc)
        assert f"has ended ({status})" in str(exc)
    else:
        assert f'o.assignment("{AID}").cancel()' in str(exc)


def test_the_command_line_says_still_running_only_when_it_is() -> None:
    assert interrupted_line(AssignmentInterrupted(AID, "running")) == (
        f"oodida: interrupted; assignment {AID} is still running; stop it with: oodida cancel {AID}"
    )
    assert "still queued" in interrupted_line(AssignmentInterrupted(AID, "pending"))
    unknown = interrupted_line(AssignmentInterrupted(AID, None))
    assert "may still be running" in unknown and f"oodida cancel {AID}" in unknown
    ended = interrupted_line(AssignmentInterrupted(AID, "done"))
    assert "still" not in ended and f"oodida results {AID}" in ended
    cancelling = interrupted_line(AssignmentInterrupted(AID, "running", cancelling=True))
    assert "may not have completed" in cancelling and f"oodida status {AID}" in cancelling


AGES = [(-3, "0s"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (307, "5m07s"), (3600, "1h00m")]
AGES += [(11_520, "3h12m"), (86_400, "1d00h"), (2 * 86_400 + 4 * 3600 + 59, "2d04h")]


@pytest.mark.parametrize(("seconds", "shown"), AGES)
def test_ages_show_two_units_at_most(seconds: float, shown: str) -> None:
    assert age(seconds) == shown


def test_progress_shows_infinity_for_an_assignment_without_a_total() -> None:
    assert progress(3, 10) == "3/10"
    assert progress(12, 0) == "12/∞"
    assert progress(12, 0, "inf") == "12/inf"


def test_the_table_has_a_header_aligned_columns_and_escaped_names() -> None:
    rows = [
        {"id": AID, "name": "a\x1b[31mred", "status": "running", "iterations_done": 12}
        | {"iterations": None, "failed_iterations": 0, "age_s": 75.0},
        {"id": "ffff", "name": "x" * 50, "status": "done", "iterations_done": 2}
        | {"iterations": 2, "failed_iterations": 1, "age_s": 3.0},
    ]
    lines = table(rows)
    assert lines[0].split() == ["ID", "NAME", "STATUS", "PROGRESS", "AGE", "FAILED"]
    assert "\x1b" not in "".join(lines) and "\\x1b" in lines[1]
    assert len(lines[2].split()[1]) == 32  # a long name is cut
    assert lines[1].split()[3:] == ["12/∞", "1m15s", "0"] and lines[2].split()[3:] == ["2/2", "3s", "1"]
    assert len({len(line) for line in lines[1:]}) == 1  # right-aligned numbers end together
