"""The pure parts of A/B experiments: the group split, the statistics (against scipy itself),
the metric read off an on-board value, the checks of an experiment, and the spec's tag."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from oodida_core.methods.values import Bad
from oodida_core.protocol.errors import OodidaError, SpecError
from oodida_core.spec.experiment import experiment_tag
from oodida_core.spec.model import LISTING_1_1, AssignmentSpec, spec_to_wire, validate_spec
from oodida_user._experiment_cli import _fractions
from oodida_user.experiment import from_json, plan_experiment, select_vehicles, variant_spec
from oodida_user.experiment_result import metric_value
from oodida_user.groups import group_sizes, split_groups
from oodida_user.stats import compare, mean_interval, summarize

SPEC = {**LISTING_1_1, "iterations": 3}


# ---------------------------------------------------------------- the split


@given(st.lists(st.integers(1, 10_000), min_size=2, max_size=200, unique=True), st.integers(0, 2**32))
def test_groups_are_disjoint_balanced_and_cover_every_vehicle(ids: list[int], seed: int) -> None:
    groups = split_groups(ids, ["A", "B"], seed=seed)
    a, b = set(groups["A"]), set(groups["B"])
    assert not a & b
    assert a | b == set(ids)
    assert abs(len(a) - len(b)) <= 1


@given(st.lists(st.integers(1, 10_000), min_size=3, max_size=100, unique=True), st.integers(0, 2**32))
def test_the_same_seed_gives_the_same_groups_whatever_the_order_of_the_ids(ids: list[int], seed: int) -> None:
    names = ["A", "B", "C"]
    assert split_groups(ids, names, seed=seed) == split_groups(list(reversed(ids)), names, seed=seed)


def test_different_seeds_give_different_groups() -> None:
    ids = list(range(1, 101))
    splits = {split_groups(ids, ["A", "B"], seed=s)["A"] for s in range(20)}
    assert len(splits) == 20


def test_the_split_is_random_not_by_id() -> None:
    firsts = [split_groups(list(range(1, 11)), ["A", "B"], seed=s)["A"] for s in range(200)]
    share = sum(1 in g for g in firsts) / len(firsts)  # vehicle 1 lands in A about half the time
    assert 0.35 < share < 0.65


@pytest.mark.parametrize(
    "n, split, expected",
    [
        (10, {"A": 0.5, "B": 0.5}, {"A": 5, "B": 5}),
        (10, {"A": 0.3, "B": 0.7}, {"A": 3, "B": 7}),
        (100, {"A": 0.1, "B": 0.9}, {"A": 10, "B": 90}),
        (7, {"A": 0.5, "B": 0.5}, {"A": 4, "B": 3}),
        (10, {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}, {"A": 4, "B": 3, "C": 3}),
    ],
)
def test_split_fractions_give_group_sizes_by_largest_remainder(
    n: int, split: dict[str, float], expected: dict[str, int]
) -> None:
    assert group_sizes(n, list(split), split) == expected
    groups = split_groups(list(range(1, n + 1)), list(split), split, seed=3)
    assert {k: len(v) for k, v in groups.items()} == expected


@pytest.mark.parametrize(
    "split, rule",
    [
        ({"A": 0.5}, "missing: B"),
        ({"A": 0.5, "B": 0.5, "C": 0.1}, "not a variant"),
        ({"A": 0.6, "B": 0.6}, "add up to 1"),
        ({"A": 0, "B": 1}, "above 0"),
        ({"A": "half", "B": 0.5}, "above 0"),
        ({"A": float("nan"), "B": 0.5}, "above 0"),
        ([0.5, 0.5], "must map each variant"),
    ],
)
def test_a_bad_split_is_a_spec_error_naming_the_rule(split: Any, rule: str) -> None:
    with pytest.raises(SpecError, match=rule):
        split_groups(list(range(1, 11)), ["A", "B"], split, seed=1)


def test_too_few_vehicles_for_the_variants_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="without a vehicle"):
        split_groups([1], ["A", "B"], seed=1)
    with pytest.raises(SpecError, match="without a vehicle"):
        split_groups(list(range(1, 11)), ["A", "B"], {"A": 0.01, "B": 0.99}, seed=1)


@pytest.mark.parametrize("names", [["A"], ["A", "A"], ["A", "bad name"], ["A", ""], ["A", "x" * 40]])
def test_bad_variant_names_are_refused(names: list[str]) -> None:
    with pytest.raises(SpecError, match="variants"):
        split_groups([1, 2, 3], names, seed=1)


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, "1", True])
def test_a_bad_seed_is_refused(seed: Any) -> None:
    with pytest.raises(SpecError, match="seed"):
        split_groups([1, 2, 3], ["A", "B"], seed=seed)


# ---------------------------------------------------------------- the statistics


def test_summary_matches_numpy() -> None:
    x = [3.0, 1.0, 4.0, 1.0, 5.0]
    s = summarize(x)
    assert (s.n, s.mean, s.median) == (5, np.mean(x), np.median(x))
    assert s.std == pytest.approx(np.std(x, ddof=1))
    assert summarize([]).mean is None and summarize([2.0]).std is None


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's own call, on nearly equal values
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30),
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30),
    st.sampled_from([0.9, 0.95, 0.99]),
)
def test_welch_comparison_is_scipys_welch_test(a: list[float], b: list[float], confidence: float) -> None:
    c = compare(a, b, test="welch", confidence=confidence)
    res = scipy.stats.ttest_ind(b, a, equal_var=False)
    if not math.isfinite(res.pvalue):
        assert c.pvalue is None and c.note
        return
    ci = res.confidence_interval(confidence)

    def finite(x: float) -> Any:  # what scipy gives as inf or NaN, the comparison gives as None
        return pytest.approx(x) if math.isfinite(x) else None

    assert c.pvalue == pytest.approx(res.pvalue)
    assert c.statistic == finite(res.statistic)
    assert c.difference == pytest.approx(np.mean(b) - np.mean(a), abs=1e-9)
    assert (c.low, c.high) == (finite(ci.low), finite(ci.high))
    assert c.significant == (res.pvalue < 1 - confidence)


def test_mann_whitney_comparison_is_scipys_test_with_a_bootstrap_interval_of_the_medians() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 40), rng.normal(1.5, 1, 40)
    c = compare(a, b, test="mannwhitney", seed=7)
    res = scipy.stats.mannwhitneyu(b, a, alternative="two-sided")
    assert c.pvalue == pytest.approx(res.pvalue) and c.statistic == pytest.approx(res.statistic)
    assert c.difference == pytest.approx(np.median(b) - np.median(a))
    assert c.low is not None and c.high is not None and c.low < c.difference < c.high
    assert c.significant
    assert compare(a, b, test="mannwhitney", seed=7) == c  # seeded: the same interval again


def test_too_few_values_give_no_test_and_say_why() -> None:
    c = compare([1.0], [2.0, 3.0])
    assert c.pvalue is None and c.difference is None and "at least 2" in c.note
    assert not c.significant
    c = compare([1.0, 1.0], [1.0, 1.0])
    assert c.pvalue is None and "no variance" in c.note


def test_mean_interval_is_the_t_interval() -> None:
    x = [1.0, 2.0, 4.0, 8.0]
    ci = scipy.stats.ttest_1samp(x, 0).confidence_interval(0.9)
    assert mean_interval(x, 0.9) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert mean_interval([1.0]) is None


@pytest.mark.parametrize("test", ["t", "anova", 3])
def test_an_unknown_test_is_refused(test: Any) -> None:
    with pytest.raises(SpecError, match="test"):
        compare([1, 2], [3, 4], test=test)


# ---------------------------------------------------------------- the metric


@pytest.mark.parametrize(
    "value, metric, expected",
    [
        (3.5, None, 3.5),
        (4, None, 4.0),
        ({"speed": 27.5}, None, 27.5),
        ({"speed": 27.5, "rpm": 900}, "rpm", 900.0),
        ([1, 2, 3], len, 3.0),
        ({"p95": 80.0}, lambda v: v["p95"] / 2, 40.0),
        (np.float64(2.5), None, 2.5),
        (31.5, "speed", 31.5),
    ],
)
def test_metric_reads_a_number_off_a_value(value: Any, metric: Any, expected: float) -> None:
    assert metric_value(value, metric) == expected


@pytest.mark.parametrize(
    "value, metric, why",
    [
        ({"speed": 1, "rpm": 2}, None, "needs metric="),
        ({"speed": 1}, "rpm", "no entry 'rpm'"),
        ("fast", None, "not a number"),
        (True, None, "not a number"),
        (float("nan"), None, "not a finite number"),
        ([1], lambda v: v[5], "metric raised IndexError"),
    ],
)
def test_a_value_the_metric_cannot_read_says_why(value: Any, metric: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        metric_value(value, metric)


# ---------------------------------------------------------------- the plan


def module(tmp_path: Path, name: str = "b.py") -> Path:
    path = tmp_path / name
    path.write_text("def custom_code(x):\n    return sum(x) / len(x)\n")
    return path


def test_a_plan_takes_modules_and_builtin_and_records_a_seed(tmp_path: Path) -> None:
    plan = plan_experiment(SPEC, {"A": "builtin", "B": module(tmp_path)})
    assert plan.names == ["A", "B"] and plan.variants["A"] is None
    assert 0 <= plan.seed < 2**32 and plan.test == "welch"
    assert plan_experiment(SPEC, {"A": "builtin", "B": "BUILTIN"}, seed=9).seed == 9


def test_every_bad_input_is_listed_in_one_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        plan_experiment(
            {**SPEC, "iterations": 0},
            {"A": "missing.py", "B": 3},
            metric=5,
            test="z",
            confidence=2,
            seed=-1,
        )
    assert {"iterations", "variants.A", "variants.B", "metric", "test", "confidence", "seed"} <= set(
        err.value.fields
    )


def test_a_builtin_variant_of_a_custom_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="builtin variant needs the spec to name a built-in"):
        plan_experiment({**SPEC, "onboard": "custom"}, {"A": "builtin", "B": module(tmp_path)})


def test_a_spec_that_already_has_an_experiment_tag_or_is_a_deployment_is_refused(tmp_path: Path) -> None:
    tag = {"id": "x", "variant": "A", "variants": ["A", "B"], "seed": 1}
    with pytest.raises(SpecError, match=r"set by o\.experiment"):
        plan_experiment({**SPEC, "experiment": tag}, {"A": "builtin", "B": "builtin"})
    with pytest.raises(SpecError, match="not a deployment"):
        plan_experiment({"mode": "deploy_onboard", "filename": "a.py"}, {"A": "builtin", "B": "builtin"})
    with pytest.raises(SpecError, match="at least 2 variants"):
        plan_experiment(SPEC, {"A": "builtin"})


def test_a_variant_spec_is_custom_for_a_module_and_carries_the_tag(tmp_path: Path) -> None:
    spec = {**SPEC, "onboard": "quantile", "offboard": "quantile", "q": 0.9}
    plan = plan_experiment(spec, {"A": "builtin", "B": module(tmp_path)}, seed=4, metric="speed")
    a = variant_spec(plan, "A", [1, 3], "e1")
    b = variant_spec(plan, "B", [2, 4], "e1")
    assert a["onboard"] == "quantile" and b["onboard"] == "custom" and b["q"] == 0.9  # offboard q stays
    assert (a["clients"], b["clients"]) == ([1, 3], [2, 4])
    assert b["experiment"] == {
        "id": "e1",
        "variant": "B",
        "variants": ["A", "B"],
        "seed": 4,
        "metric": "speed",
        "test": "welch",
    }
    for wire in (a, b):  # what the cloud validates and stores
        assert spec_to_wire(validate_spec(wire)) == validate_spec(wire).model_dump(mode="json")
    plan = plan_experiment({**SPEC, "onboard": "quantile", "q": 0.9}, {"A": "builtin", "B": module(tmp_path)})
    assert "q" not in variant_spec(plan, "B", [1], "e2")  # the built-in's parameter goes


def test_the_json_form_reads_modules_next_to_the_file(tmp_path: Path) -> None:
    module(tmp_path, "b.py")
    raw = {**SPEC, "experiment": {"variants": {"A": "builtin", "B": "b.py"}, "seed": 3, "metric": "speed"}}
    spec, args = from_json(raw, tmp_path)
    assert "experiment" not in spec and args["variants"]["B"] == str(tmp_path / "b.py")
    plan = plan_experiment(spec, **args)
    assert plan.seed == 3 and plan.metric == "speed"
    with pytest.raises(SpecError, match="unknown key"):
        from_json({**SPEC, "experiment": {"variants": {}, "colour": 1}})
    direct = plan_experiment(
        {**SPEC, "experiment": {"variants": {"A": "builtin", "B": "builtin"}, "seed": 8}}
    )
    assert direct.seed == 8 and direct.names == ["A", "B"]  # o.experiment(json) takes the same form


@pytest.mark.parametrize(
    "items, expected",
    [(["A=0.3,B=0.7"], {"A": 0.3, "B": 0.7}), (["A=0.5", "B=0.5"], {"A": 0.5, "B": 0.5}), ([], None)],
)
def test_the_command_line_split_reads_fractions(items: list[str], expected: Any) -> None:
    assert _fractions(items) == expected


@pytest.mark.parametrize("items", [["A"], ["A=half"], ["=0.5"]])
def test_a_bad_command_line_split_says_how_to_write_it(items: list[str]) -> None:
    with pytest.raises(OodidaError, match="--split"):
        _fractions(items)


def test_select_vehicles_follows_the_spec_clients() -> None:
    from oodida_core.protocol.wire import ClientInfo

    live = [
        ClientInfo(client_id=i, signals=("speed",), worker="w", hostname="h", pid=1, started_at=0)
        for i in (1, 2, 5, 7)
    ]
    assert select_vehicles("all", live, 1) == [1, 2, 5, 7]
    assert select_vehicles((2, 7), live, 1) == [2, 7]
    picked = select_vehicles(2, live, 1)
    assert len(picked) == 2 and picked == select_vehicles(2, live, 1)
    with pytest.raises(SpecError, match="not live"):
        select_vehicles((2, 3), live, 1)


# ---------------------------------------------------------------- the spec's tag


def test_the_tag_is_checked_field_by_field() -> None:
    good = {"id": "a1", "variant": "B", "variants": ["A", "B"], "seed": 0}
    assert experiment_tag(good).test == "welch"
    for bad in (
        {**good, "id": "no spaces"},
        {**good, "seed": -1},
        {**good, "variants": ["A"]},
        {**good, "test": "t"},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "seed"},
        "A",
    ):
        with pytest.raises(Bad):
            experiment_tag(bad)


def test_a_variant_spec_keeps_a_long_name_within_the_limit() -> None:
    plan = plan_experiment({**SPEC, "name": "n" * 200}, {"A": "builtin", "x" * 32: "builtin"})
    wire = variant_spec(plan, "x" * 32, [1], "e3")
    assert len(wire["name"]) <= 200 and wire["name"].endswith(f"[{'x' * 32}]")
    validate_spec(wire)


def test_select_vehicles_takes_a_tag_filter_with_its_k() -> None:
    from oodida_core.protocol.wire import ClientInfo

    def info(cid: int, powertrain: str) -> ClientInfo:
        return ClientInfo(
            client_id=cid,
            signals=("speed",),
            worker="w",
            hostname="h",
            pid=1,
            started_at=0,
            tags={"powertrain": powertrain},
        )

    live = [info(1, "ev"), info(2, "diesel"), info(3, "ev"), info(4, "ev")]
    spec = validate_spec({**SPEC, "clients": {"tags": {"powertrain": "ev"}}})
    assert isinstance(spec, AssignmentSpec)
    assert select_vehicles(spec.clients, live, 1) == [1, 3, 4]
    spec = validate_spec({**SPEC, "clients": {"tags": {"powertrain": "ev"}, "k": 2}})
    assert isinstance(spec, AssignmentSpec)
    picked = select_vehicles(spec.clients, live, 1)
    assert len(picked) == 2 and set(picked) <= {1, 3, 4}
