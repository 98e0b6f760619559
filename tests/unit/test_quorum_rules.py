"""The quorum (``min_clients``): the spec key, its check at start, the cloud's rule for a
``quorum`` ending (ending.refusal), the iteration it makes (combine: late, not missing), and
what a client decides after its answer (oodida_edge.quorum)."""

from __future__ import annotations

import time

import pytest

from oodida_cloud import ending
from oodida_cloud.iteration import combine
from oodida_cloud.planning import check_min_clients, onboard_tasks
from oodida_core.protocol.errors import SpecError
from oodida_core.protocol.wire import IterationResult, OnboardResult, OnboardTask
from oodida_core.spec.model import AssignmentSpec, spec_to_wire, validate_spec
from oodida_edge.quorum import quorum_of, reached

BASE = {
    "name": "q",
    "mode": "measurement",
    "clients": "all",
    "signals": ["speed"],
    "onboard": "average",
    "offboard": "average",
    "frequency": 1,
    "samples": 10,
    "iterations": 1,
}
FAR = time.time() + 3600


def spec(**kw: object) -> AssignmentSpec:
    s = validate_spec({**BASE, **kw})
    assert isinstance(s, AssignmentSpec)
    return s


def answer(cid: int, status: str = "ok", iteration: int = 0) -> OnboardResult:
    return OnboardResult(
        assignment_id="a",
        iteration=iteration,
        client_id=cid,
        status=status,  # type: ignore[arg-type]
        value={"speed": float(cid)} if status == "ok" else None,
        error="boom" if status == "failed" else None,
        started_at=0.0,
        finished_at=1.0,
    )


# -- the spec key ---------------------------------------------------------------------------


def test_min_clients_is_an_optional_positive_integer_that_round_trips() -> None:
    assert spec().min_clients is None
    s = spec(min_clients=3)
    assert s.min_clients == 3
    assert validate_spec(spec_to_wire(s)) == s


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True, [2], 1_000_001])
def test_a_bad_min_clients_is_a_spec_error_naming_the_key(bad: object) -> None:
    with pytest.raises(SpecError) as info:
        validate_spec({**BASE, "min_clients": bad})
    (issue,) = info.value.issues
    assert issue.field == "min_clients" and "integer from 1" in issue.rule


def test_a_min_clients_above_the_selected_clients_is_refused_at_start_naming_them() -> None:
    check_min_clients(spec(min_clients=3), [1, 2, 3])
    check_min_clients(spec(), [1])
    with pytest.raises(SpecError) as info:
        check_min_clients(spec(min_clients=4), [1, 2, 3])
    (issue,) = info.value.issues
    assert issue.field == "min_clients" and issue.value == 4
    assert "at most the number of selected clients (3: 1-3)" in issue.rule


def test_each_onboard_task_carries_the_quorum() -> None:
    tasks = onboard_tasks(spec(min_clients=2), "a", "u", 0, [1, 2, 3], None, FAR)
    assert [t.quorum for t in tasks] == [2, 2, 2]
    assert [t.quorum for t in onboard_tasks(spec(), "a", "u", 0, [1], None, FAR)] == [None]


# -- the cloud's rule -----------------------------------------------------------------------


def test_a_quorum_ending_is_refused_before_min_clients_selected_clients_answered() -> None:
    clients = [1, 2, 3, 4]
    refused = ending.refusal("quorum", "running", clients, [1], FAR, quorum=2)
    assert refused == "only 1 of its min_clients 2 have answered"
    # an answer from a client that is not selected does not count
    assert ending.refusal("quorum", "running", clients, [1, 9], FAR, quorum=2) is not None
    assert ending.refusal("quorum", "running", clients, [1, 3], FAR, quorum=2) is None
    assert ending.refusal("quorum", "running", clients, [1, 3, 4], FAR, quorum=2) is None


def test_a_quorum_ending_counts_each_client_once() -> None:
    assert ending.refusal("quorum", "running", [1, 2, 3], [1, 1, 1], FAR, quorum=2) is not None


def test_a_quorum_ending_of_an_assignment_without_min_clients_is_refused() -> None:
    refused = ending.refusal("quorum", "running", [1, 2], [1, 2], FAR)
    assert refused == "its assignment sets no min_clients"


def test_a_cancelled_assignment_may_close_at_any_reason_quorum_included() -> None:
    assert ending.refusal("quorum", "cancelled", [1, 2], [], FAR, quorum=2) is None


def test_the_other_reasons_ignore_the_quorum() -> None:
    assert ending.refusal("complete", "running", [1, 2, 3], [1, 2], FAR, quorum=2) is not None
    assert ending.refusal("deadline", "running", [1, 2, 3], [1, 2], FAR, quorum=2) is not None


# -- the iteration a quorum closes -----------------------------------------------------------


def test_a_quorum_iteration_lists_the_clients_without_an_answer_as_late_not_missing() -> None:
    result = combine(spec(min_clients=2), "a", 0, [1, 2, 3, 4], [answer(2), answer(1)], 0.0, 1.0, quorum=True)
    assert result.ended_by == "quorum"
    assert result.late == (3, 4) and result.missing == ()
    assert result.onboard == {1: {"speed": 1.0}, 2: {"speed": 2.0}}
    assert result.value == {"speed": 1.5}  # only the answers that made the quorum


def test_a_quorum_iteration_keeps_failures_as_failures_and_skips_skipped() -> None:
    answers = [answer(1), answer(2, status="failed"), answer(3, status="skipped")]
    result = combine(spec(min_clients=2), "a", 0, [1, 2, 3], answers, 0.0, 1.0, quorum=True)
    assert result.failed == {2: "boom"} and result.late == (3,)


def test_a_quorum_reached_by_every_client_is_complete() -> None:
    result = combine(spec(min_clients=2), "a", 0, [1, 2], [answer(1), answer(2)], 0.0, 1.0, quorum=True)
    assert result.ended_by == "complete" and result.late == () and result.missing == ()


def test_a_cancel_wins_over_the_quorum() -> None:
    result = combine(spec(min_clients=1), "a", 0, [1, 2], [answer(1)], 0.0, 1.0, cancelled=True, quorum=True)
    assert result.ended_by == "cancel" and result.missing == (2,) and result.late == ()


def test_a_late_answer_of_the_previous_iteration_does_not_count_for_this_one() -> None:
    late = answer(3, iteration=0)
    result = combine(
        spec(min_clients=2), "a", 1, [1, 2, 3], [answer(1, iteration=1), late], 0.0, 1.0, quorum=True
    )
    assert sorted(result.onboard) == [1] and result.late == (2, 3)


def test_a_deadline_without_quorum_still_reports_missing() -> None:
    result = combine(spec(min_clients=3), "a", 0, [1, 2, 3], [answer(1)], 0.0, 1.0)
    assert result.ended_by == "deadline" and result.missing == (2, 3) and result.late == ()


def test_a_stored_result_without_late_reads_as_none_late() -> None:
    old = {"index": 0, "started_at": 0.0, "finished_at": 1.0, "missing": [2], "ended_by": "deadline"}
    assert IterationResult.model_validate(old).late == ()


# -- the client's side ----------------------------------------------------------------------


def test_a_client_announces_the_quorum_only_when_reached_and_the_chord_is_open() -> None:
    assert not reached(1, False, 2)
    assert reached(2, False, 2)
    assert reached(3, False, 2)  # answers after the quorum, before the cloud closed it
    assert not reached(5, True, 2)  # closed: a late answer announces nothing


@pytest.mark.parametrize(
    ("message", "quorum"),
    [({"quorum": 3}, 3), ({"quorum": None}, None), ({}, None), ({"quorum": 0}, None),
     ({"quorum": True}, None), ({"quorum": "3"}, None), ("not a dict", None)],
)  # fmt: skip
def test_the_quorum_of_a_task_message_is_a_positive_integer_or_none(
    message: object, quorum: int | None
) -> None:
    assert quorum_of(message) == quorum


def test_an_onboard_task_refuses_a_quorum_below_one() -> None:
    fields = {
        "assignment_id": "a",
        "user": "u",
        "iteration": 0,
        "client_id": 1,
        "method": "average",
        "signals": ["speed"],
        "samples": 1,
        "frequency": 1,
        "deadline": FAR,
    }
    assert OnboardTask.model_validate({**fields, "quorum": 2}).quorum == 2
    with pytest.raises(ValueError):
        OnboardTask.model_validate({**fields, "quorum": 0})
