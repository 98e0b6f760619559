"""The canary's pure decision rules: its size and group, the guard's checks of its inputs,
the failure-rate, metric-distance and custom rules, the decision, the report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from oodida_core.protocol.errors import SpecError
from oodida_core.protocol.wire import IterationResult
from oodida_user.canary import observations, snapshot
from oodida_user.canary_rules import (
    CanaryReport,
    Guard,
    GuardObservations,
    RuleResult,
    canary_size,
    custom_rule,
    decide,
    distance_rule,
    failure_rule,
    metric_values,
    pick_canary,
)
from oodida_user.deploy import DeployReport
from oodida_user.results import Result

SPEC = {
    "name": "g",
    "mode": "measurement",
    "signals": ["speed"],
    "onboard": "custom",
    "frequency": 1,
    "samples": 5,
}


def obs(**changes: Any) -> GuardObservations:
    values: dict[str, Any] = {
        "canary_values": {1: [10.0, 10.0]},
        "control_values": {2: [10.0, 10.0], 3: [10.0, 10.0]},
        "asked": 2,
        "iterations": 2,
    }
    values.update(changes)
    return GuardObservations(**values)


# -- the canary's size and group ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("canary", "n", "size"),
    [(0.1, 10, 1), (0.1, 11, 2), (0.1, 3, 1), (0.5, 4, 2), (0.99, 10, 9), (0.3, 10, 3), (1, 2, 1), (3, 5, 3)],
)
def test_canary_size_is_ceil_of_the_fraction_at_least_one_and_fewer_than_all(
    canary: float, n: int, size: int
) -> None:
    assert canary_size(canary, n) == size


@pytest.mark.parametrize("canary", [0.0, 1.0, 1.5, -0.1, math.nan, math.inf, True, "0.1", None, 0, 5, 7, -1])
def test_canary_size_refuses_what_is_neither_a_fraction_nor_a_smaller_count(canary: object) -> None:
    with pytest.raises(SpecError) as err:
        canary_size(canary, 5)
    assert err.value.issues[0].field == "canary"


@pytest.mark.parametrize("n", [0, 1])
def test_a_canary_needs_two_live_vehicles(n: int) -> None:
    with pytest.raises(SpecError, match="at least 2 live selected vehicles"):
        canary_size(0.5, n)


def test_pick_canary_is_seeded_disjoint_and_covers_the_selection() -> None:
    live = [5, 3, 9, 1, 7, 2]
    canary, others = pick_canary(live, 2, seed=42)
    assert (canary, others) == pick_canary(list(reversed(live)), 2, seed=42)
    assert len(canary) == 2 and set(canary) | set(others) == set(live) and not set(canary) & set(others)
    assert canary == tuple(sorted(canary)) and others == tuple(sorted(others))
    assert len({pick_canary(live, 2, seed=s)[0] for s in range(50)}) > 5  # the seed matters


# -- the guard's inputs ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"spec": {**SPEC, "mode": "federated"}}, "guard.spec.mode"),
        ({"spec": {**SPEC, "onboard": "average"}}, "guard.spec.onboard"),
        ({"spec": [1]}, "guard.spec"),
        ({"iterations": 0}, "guard.iterations"),
        ({"iterations": True}, "guard.iterations"),
        ({"max_failure_rate": 1.5}, "guard.max_failure_rate"),
        ({"max_failure_rate": math.nan}, "guard.max_failure_rate"),
        ({"tolerance": -1.0}, "guard.tolerance"),
        ({"rel_tolerance": math.inf}, "guard.rel_tolerance"),
        ({"metric": "speed"}, "guard.metric"),  # no tolerance to compare it by
        ({"metric": 3, "tolerance": 1.0}, "guard.metric"),
        ({"rule": "not callable"}, "guard.rule"),
        ({"fallback": "custom"}, "guard.fallback"),
        ({"timeout": 0}, "guard.timeout"),
    ],
)
def test_guard_refuses_a_bad_field_naming_it(changes: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {"spec": SPEC, **changes}
    with pytest.raises(SpecError) as err:
        Guard(**values)
    assert field in [i.field for i in err.value.issues], err.value


def test_guard_lists_every_bad_field_at_once() -> None:
    with pytest.raises(SpecError) as err:
        Guard(spec={**SPEC, "mode": "x"}, iterations=0, max_failure_rate=2)
    assert len(err.value.issues) == 3 and "3 problems" in str(err.value)


def test_guard_from_json_reads_the_cli_form_and_refuses_unknown_keys() -> None:
    g = Guard.from_json({"spec": SPEC, "max_failure_rate": 0.1, "metric": "speed", "tolerance": 2})
    assert (g.max_failure_rate, g.metric, g.tolerance, g.compares) == (0.1, "speed", 2, True)
    with pytest.raises(SpecError, match=r"guard\.tolerence"):
        Guard.from_json({"spec": SPEC, "tolerence": 1})
    with pytest.raises(SpecError, match=r"guard\.spec"):
        Guard.from_json({"max_failure_rate": 0.1})
    with pytest.raises(SpecError, match=r"guard\.metric"):
        Guard.from_json({"spec": SPEC, "metric": ["speed"], "tolerance": 1})
    with pytest.raises(SpecError, match="JSON object"):
        Guard.from_json([SPEC])


# -- the rules ---------------------------------------------------------------------------------
def test_failure_rate_is_failed_over_asked_and_passes_at_the_limit() -> None:
    o = obs(failures={1: ["boom"]}, canary_values={1: [1.0]}, asked=4)
    assert o.failure_rate == 0.25
    assert failure_rule(o, 0.25).passed
    r = failure_rule(o, 0.2)
    assert not r.passed and "1/4 = 0.250" in r.detail and "client 1: 1 failed, e.g. boom" in r.detail


def test_a_vehicle_that_refused_the_module_fails_every_iteration() -> None:
    o = obs(rejected={4: "numpy is missing"}, asked=2, iterations=2)
    assert (o.failed, o.asked_total) == (2, 4)
    r = failure_rule(o, 0.4)
    assert not r.passed and "client 4 refused the module: numpy is missing" in r.detail


def test_nothing_asked_is_no_pass() -> None:
    assert not failure_rule(obs(asked=0, canary_values={}), 1.0).passed


def test_missing_answers_are_said_and_not_counted() -> None:
    r = failure_rule(obs(missing={7: 2}), 0.0)
    assert r.passed and "not counted, no answer in time: {7: 2}" in r.detail


@pytest.mark.parametrize(
    ("canary", "control", "tol", "rel", "passed"),
    [
        ([10.0, 12.0], [11.0], 0.0, None, True),
        ([10.0, 12.0], [10.0], 0.5, None, False),
        ([10.0, 12.0], [10.0], 1.0, None, True),
        ([110.0], [100.0], None, 0.1, True),
        ([111.0], [100.0], None, 0.1, False),
        ([111.0], [100.0], 0.5, 0.1, False),
        ([111.0], [100.0], 11.0, 0.1, True),  # within either one
        ([], [1.0], 1.0, None, False),
        ([1.0], [], 1.0, None, False),
    ],
)
def test_distance_rule_on_the_means(
    canary: list[float], control: list[float], tol: float | None, rel: float | None, passed: bool
) -> None:
    assert distance_rule(canary, control, tol, rel).passed is passed


def test_distance_rule_says_the_figures() -> None:
    r = distance_rule([12.0, 14.0], [10.0], 1.0, 0.1)
    assert "canary mean 13 (n=2), others' mean 10 (n=1), distance 3, allowed 1 (abs) or 1 (rel)" in r.detail


def test_metric_reads_a_key_a_number_or_a_callable() -> None:
    values: dict[int, list[Any]] = {2: [{"speed": 3.0}, 4], 1: [{"speed": 1.0}]}
    assert metric_values(values, "speed") == [1.0, 3.0, 4.0]
    assert metric_values({1: [[1, 2, 3]]}, lambda v: sum(v)) == [6.0]
    assert metric_values({1: [2.5]}, None) == [2.5]


@pytest.mark.parametrize(
    ("values", "metric", "why"),
    [
        ({3: [{"rpm": 1.0}]}, "speed", "client 3: ValueError: the value has no key 'speed'"),
        ({3: [[1, 2]]}, None, "client 3: TypeError"),
        ({3: [1.0]}, lambda v: 1 / 0, "client 3: ZeroDivisionError"),
        ({3: [math.nan]}, None, "client 3: nan is not a finite number"),
        ({3: [True]}, None, "client 3: True is not a finite number"),
    ],
)
def test_a_metric_that_cannot_be_computed_names_the_vehicle(values: Any, metric: Any, why: str) -> None:
    with pytest.raises(ValueError, match="client 3") as err:
        metric_values(values, metric)
    assert why in str(err.value)


def test_custom_rule_passes_on_none_and_fails_with_its_reason_or_when_it_raises() -> None:
    assert custom_rule(obs(), lambda o: None).passed
    r = custom_rule(obs(), lambda o: f"too slow on {sorted(o.canary_values)}")
    assert not r.passed and r.detail == "too slow on [1]"
    r = custom_rule(obs(), lambda o: [][1])
    assert not r.passed and r.detail.startswith("raised IndexError")


def test_decide_promotes_only_when_every_rule_passes() -> None:
    guard = Guard(spec=SPEC, max_failure_rate=0.0, tolerance=0.5, rule=lambda o: None)
    outcome, rules = decide(obs(), guard)
    assert outcome == "promoted" and [r.rule for r in rules] == [
        "failure rate",
        "metric distance",
        "custom rule",
    ]
    outcome, rules = decide(obs(canary_values={1: [11.0, 11.0]}), guard)
    assert outcome == "rolled_back" and [r.rule for r in rules if not r.passed] == ["metric distance"]
    outcome, rules = decide(obs(errors=("guard assignment x ended failed: boom",)), guard)
    assert outcome == "rolled_back" and any(r.rule == "guard assignment" and not r.passed for r in rules)
    outcome, rules = decide(obs(), Guard(spec=SPEC))  # no metric rule unless a tolerance is given
    assert outcome == "promoted" and [r.rule for r in rules] == ["failure rate"]


def test_observations_split_canary_and_others_and_count_what_was_asked() -> None:
    def it(
        index: int,
        onboard: dict[int, Any],
        failed: dict[int, str] | None = None,
        missing: tuple[int, ...] = (),
    ) -> IterationResult:
        return IterationResult(
            index=index, onboard=onboard, failed=failed or {}, missing=missing, started_at=0, finished_at=1
        )

    canary = Result("a", "done", {}, (1, 2, 7), [it(0, {1: 1.0}, {2: "boom"}, (7,)), it(1, {1: 2.0, 2: 3.0})])
    others = Result("b", "done", {}, (3,), [it(0, {3: 5.0}), it(1, {3: 6.0})])
    o = observations({"canary": canary, "others": others}, {9: "refused"})
    assert o.canary_values == {1: [1.0, 2.0], 2: [3.0]} and o.control_values == {3: [5.0, 6.0]}
    assert o.failures == {2: ["boom"]} and o.missing == {7: 1} and o.asked == 4 and o.iterations == 2
    assert (o.failed, o.asked_total) == (3, 6)  # the refusing vehicle fails both iterations
    failed = Result("c", "failed", {}, (1,), [], error="no worker")
    assert observations({"canary": failed}, {}).errors == (
        "the canary's guard assignment c ended failed: no worker",
    )


def test_report_reads_well() -> None:
    rep = CanaryReport(
        outcome="rolled_back",
        version="sha256:" + "ab" * 32,
        reasons=("failure rate: FAIL: 2/4",),
        canary=(1, 2),
        control=(3, 4, 5),
        seed=11,
        rules=(RuleResult("failure rate", False, "2/4 = 0.500 (max 0.000)"),),
        guard_assignments={"canary": "g1", "others": "g2"},
        deploy_reports={"canary": DeployReport("d1", "onboard", "sha256:ab", (1,), {2: "no numpy"})},
        pending=(7,),
    )
    text = str(rep)
    assert not rep.promoted
    assert (
        text.splitlines()[0] == "canary deployment of sha256:abababababab: ROLLED BACK on the canary vehicles"
    )
    for part in (
        "canary: [1, 2]; others: [3, 4, 5]; seed 11",
        "failure rate: FAIL: 2/4 = 0.500",
        "guard assignment (others): g2",
        "deployment (canary) d1: accepted by [1]",
        "client 2 refused: no numpy",
        "get the outcome when they come back: [7]",
    ):
        assert part in text


def test_the_canary_deploys_a_snapshot_of_the_module_so_promotion_sends_what_was_tested(
    tmp_path: Path,
) -> None:
    module = tmp_path / "src" / "mine.py"
    module.parent.mkdir()
    module.write_text("def custom_code(x):\n    return 1\n")
    into = tmp_path / "snap"
    into.mkdir()
    copy = snapshot(module, into, 1000)
    module.write_text("def custom_code(x):\n    return 2\n")  # edited while the canary runs
    assert Path(copy).name == "mine.py" and Path(copy).read_text() == "def custom_code(x):\n    return 1\n"
    missing = tmp_path / "none.py"
    assert snapshot(missing, into, 1000) == missing  # the deployment says why, as always
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * 5000)
    assert len(Path(snapshot(big, into, 100)).read_bytes()) == 101  # over the limit: still refused
