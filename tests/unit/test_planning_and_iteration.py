"""Fan-out and fan-in as pure functions: selecting clients, building tasks, combining answers."""

from __future__ import annotations

import pytest

from oodida_cloud.iteration import combine
from oodida_cloud.planning import check_signals, onboard_tasks, select_clients
from oodida_core.protocol.errors import SpecError
from oodida_core.protocol.ids import format_ranges, parse_id_ranges
from oodida_core.protocol.keys import header_task_id
from oodida_core.protocol.wire import ClientInfo, OnboardResult
from oodida_core.spec.model import AssignmentSpec, validate_spec

BASE = {
    "name": "t",
    "mode": "measurement",
    "clients": "all",
    "signals": ["speed"],
    "onboard": "average",
    "offboard": "average",
    "frequency": 1,
    "samples": 10,
    "iterations": 1,
}


def spec(**kw: object) -> AssignmentSpec:
    s = validate_spec({**BASE, **kw})
    assert isinstance(s, AssignmentSpec)
    return s


def live(*ids: int, signals: tuple[str, ...] = ("speed", "rpm")) -> list[ClientInfo]:
    return [
        ClientInfo(client_id=i, signals=signals, worker="w", hostname="h", pid=1, started_at=0.0) for i in ids
    ]


def answer(
    cid: int,
    value: object = None,
    status: str = "ok",
    version: str = "builtin",
    iteration: int = 0,
    finished: float = 1.0,
) -> OnboardResult:
    return OnboardResult(
        assignment_id="a",
        iteration=iteration,
        client_id=cid,
        status=status,  # type: ignore[arg-type]
        value=value if value is not None else {"speed": float(cid)},
        version=version,
        error="boom" if status == "failed" else None,
        started_at=0.0,
        finished_at=finished,
    )


def test_all_selects_every_live_client_in_order() -> None:
    assert select_clients(spec(), live(3, 1, 2), {1, 2, 3}, "x") == [1, 2, 3]


def test_k_selects_k_live_clients_reproducibly_or_all_when_fewer() -> None:
    pool = live(*range(1, 21))
    picked = select_clients(spec(clients=5), pool, set(), "seed")
    assert len(picked) == 5 and picked == sorted(picked)
    assert picked == select_clients(spec(clients=5), pool, set(), "seed")
    assert select_clients(spec(clients=50), pool, set(), "seed") == list(range(1, 21))


def test_unknown_and_offline_ids_are_named() -> None:
    with pytest.raises(SpecError) as err:
        select_clients(spec(clients=[1, 7, 8, 9, 4]), live(1, 2), {1, 2, 4}, "x")
    text = str(err.value)
    assert "unknown client ids 7-9" in text and "clients 4 are not live" in text


def test_no_live_client_is_an_error() -> None:
    with pytest.raises(SpecError, match="no client is live"):
        select_clients(spec(), [], set(), "x")


def test_a_signal_a_client_does_not_offer_is_named_with_the_clients() -> None:
    with pytest.raises(SpecError, match="'fuel_rate' is not offered by clients 1-2"):
        check_signals(spec(signals=["speed", "fuel_rate"]), [1, 2], live(1, 2))


def test_onboard_tasks_carry_the_parameters_and_the_model() -> None:
    tasks = onboard_tasks(
        spec(onboard="histogram", bins=4, offboard="sum"), "a", "u", 2, [1, 5], {"w": 1}, 99.0
    )
    assert [t.client_id for t in tasks] == [1, 5]
    assert tasks[0].bins == 4 and tasks[0].model == {"w": 1} and tasks[0].iteration == 2
    assert header_task_id("a", 2, 5) == "a-i2-c5"


def test_combine_aggregates_kept_answers_and_lists_missing_and_failed() -> None:
    result = combine(
        spec(), "a", 0, [1, 2, 3, 4], [answer(1), answer(2), answer(3, status="failed")], 0.0, 1.0
    )
    assert result.value == {"speed": 1.5}
    assert result.onboard == {1: {"speed": 1.0}, 2: {"speed": 2.0}}
    assert result.failed == {3: "boom"} and result.missing == (4,)
    assert result.ended_by == "deadline"


def test_combine_is_idempotent_under_duplicates_reordering_and_strays() -> None:
    answers = [answer(1), answer(2), answer(3)]
    strays = [answer(9), answer(1, iteration=1, value={"speed": 100.0})]
    once = combine(spec(), "a", 0, [1, 2, 3], answers, 0.0, 1.0)
    again = combine(spec(), "a", 0, [1, 2, 3], [*reversed(answers), *answers, *strays], 0.0, 1.0)
    assert once == again and once.ended_by == "complete"


def test_a_success_wins_over_a_failure_of_the_same_client() -> None:
    result = combine(spec(), "a", 0, [1], [answer(1, status="failed"), answer(1)], 0.0, 1.0)
    assert result.failed == {} and result.onboard == {1: {"speed": 1.0}}


def test_combine_discards_a_minority_code_version() -> None:
    answers = [answer(1, version="sha256:aa"), answer(2, version="sha256:aa"), answer(3, version="sha256:bb")]
    result = combine(spec(), "a", 0, [1, 2, 3], answers, 0.0, 1.0)
    assert sorted(result.onboard) == [1, 2] and list(result.discarded) == [3]
    assert result.versions == {1: "sha256:aa", 2: "sha256:aa", 3: "sha256:bb"}


def test_an_offboard_failure_is_reported_not_raised() -> None:
    answers = [answer(1, value={"speed": [1.0, 2.0]}), answer(2, value={"speed": [1.0]})]
    result = combine(spec(onboard="collect"), "a", 0, [1, 2], answers, 0.0, 1.0)
    assert result.value is None and result.error


def test_id_ranges_round_trip_and_reject_nonsense() -> None:
    assert parse_id_ranges("1-3,5, 7-8") == [1, 2, 3, 5, 7, 8]
    assert format_ranges([8, 7, 5, 3, 2, 1]) == "1-3,5,7-8"
    for bad in ("", "0-3", "5-2", "a", "1,,2", "1-100000000"):
        with pytest.raises(ValueError):
            parse_id_ranges(bad)
