"""The assignment spec: every rule of the contract, the messages, defaults and the round trip."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oodida_core.protocol.errors import MISSING, SpecError
from oodida_core.protocol.signals import SIGNAL_NAMES
from oodida_core.spec import model as spec_module
from oodida_core.spec.model import (
    METHOD_ALIASES,
    MODES,
    OFFBOARD_METHODS,
    ONBOARD_METHODS,
    AssignmentSpec,
    DeploySpec,
    spec_json_schema,
    spec_to_wire,
    validate_spec,
)

LISTING_1_1: dict[str, Any] = {
    "name": "Measurement Task",
    "description": "Average of velocity",
    "mode": "Measurement",
    "clients": "all",
    "signals": ["speed"],
    "onboard": "average",
    "offboard": "collect",
    "frequency": 1,
    "samples": 1000,
    "iterations": 1,
}

THRESHOLD = {**LISTING_1_1, "mode": "monitoring", "onboard": "threshold", "threshold": 120}
SAMPLE = {**LISTING_1_1, "onboard": "sample"}
HISTOGRAM = {**LISTING_1_1, "onboard": "histogram", "offboard": "sum"}
FEDERATED = {
    **LISTING_1_1,
    "mode": "federated",
    "signals": ["rpm", "speed"],
    "onboard": "train",
    "offboard": "fedavg",
}
DEPLOY = {"mode": "deploy_onboard", "filename": "my_module.py", "clients": [1, 2]}


def problems(raw: object) -> SpecError:
    with pytest.raises(SpecError) as caught:
        validate_spec(raw)
    return caught.value


def rules_for(error: SpecError, field: str) -> list[str]:
    return [i.rule for i in error.issues if i.field == field]


# ---------------------------------------------------------------- accepted specs


def test_the_papers_listing_is_accepted_and_normalised() -> None:
    spec = validate_spec(LISTING_1_1)
    assert isinstance(spec, AssignmentSpec)
    assert spec.mode == "measurement"
    assert spec.clients == "all"
    assert spec.signals == ("speed",)
    assert (spec.onboard, spec.offboard) == ("average", "collect")
    assert (spec.frequency, spec.samples, spec.iterations) == (1, 1000, 1)
    assert spec.timeout == 60.0
    assert (spec.threshold, spec.direction, spec.sample_size, spec.bins) == (None,) * 4


def test_names_are_case_insensitive_and_aliases_are_resolved() -> None:
    spec = validate_spec(
        {
            **LISTING_1_1,
            "mode": "MEASUREMENT",
            "clients": "All",
            "signals": "Speed",
            "onboard": "Mean",
            "offboard": "MEAN",
        }
    )
    assert isinstance(spec, AssignmentSpec)
    assert (spec.mode, spec.clients, spec.signals) == ("measurement", "all", ("speed",))
    assert (spec.onboard, spec.offboard) == ("average", "average")
    assert METHOD_ALIASES == {"mean": "average"}


def test_integral_floats_become_ints_and_client_forms_are_kept() -> None:
    spec = validate_spec({**LISTING_1_1, "frequency": 5.0, "samples": 10.0, "clients": [3, 1.0]})
    assert isinstance(spec, AssignmentSpec)
    assert (spec.frequency, spec.samples, spec.clients) == (5, 10, (3, 1))
    assert type(spec.frequency) is int
    k = validate_spec({**LISTING_1_1, "clients": 7})
    assert isinstance(k, AssignmentSpec) and k.clients == 7


def test_defaults_are_applied() -> None:
    raw = {k: v for k, v in LISTING_1_1.items() if k not in ("description", "offboard")}
    spec = validate_spec(raw)
    assert isinstance(spec, AssignmentSpec)
    assert (spec.description, spec.offboard, spec.timeout) == ("", "collect", 60.0)
    threshold = validate_spec(THRESHOLD)
    assert isinstance(threshold, AssignmentSpec)
    assert (threshold.threshold, threshold.direction) == (120.0, "above")
    histogram = validate_spec(HISTOGRAM)
    assert isinstance(histogram, AssignmentSpec) and histogram.bins == 10
    sample = validate_spec(SAMPLE)
    assert isinstance(sample, AssignmentSpec) and sample.sample_size == 10
    small = validate_spec({**SAMPLE, "samples": 4})
    assert isinstance(small, AssignmentSpec) and small.sample_size == 4


def test_optional_keys_given_as_null_count_as_not_given() -> None:
    spec = validate_spec({**LISTING_1_1, "threshold": None, "bins": None, "timeout": None})
    assert isinstance(spec, AssignmentSpec)
    assert (spec.threshold, spec.bins, spec.timeout) == (None, None, 60.0)


@pytest.mark.parametrize(
    "raw",
    [
        {**THRESHOLD, "direction": "Below", "threshold": -2.5},
        {**SAMPLE, "sample_size": 1000, "offboard": "median"},
        {**HISTOGRAM, "bins": 1000},
        FEDERATED,
        {**FEDERATED, "offboard": "collect", "signals": ["speed", "rpm", "engine_temp"]},
        {**LISTING_1_1, "onboard": "count", "offboard": "sum", "iterations": 0, "timeout": 0.5},
        {**LISTING_1_1, "onboard": "collect", "offboard": "max", "frequency": 100},
    ],
    ids=["threshold", "sample", "histogram", "fedavg", "federated-collect", "count", "collect"],
)
def test_valid_combinations_are_accepted(raw: dict[str, Any]) -> None:
    assert isinstance(validate_spec(raw), AssignmentSpec)


def test_every_onboard_method_has_its_offboard_methods() -> None:
    assert set(ONBOARD_METHODS) == set(spec_module.OFFBOARD_FOR_ONBOARD)
    assert "fedavg" in OFFBOARD_METHODS and "deploy_onboard" in MODES


def test_a_spec_object_passes_through() -> None:
    spec = validate_spec(LISTING_1_1)
    assert validate_spec(spec) is spec


# ---------------------------------------------------------------- one rule at a time

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({**LISTING_1_1, "name": ""}, "name"),
    ({**LISTING_1_1, "name": "   "}, "name"),
    ({**LISTING_1_1, "name": "x" * 201}, "name"),
    ({**LISTING_1_1, "name": 5}, "name"),
    ({**LISTING_1_1, "name": None}, "name"),
    ({**LISTING_1_1, "description": "x" * 10_001}, "description"),
    ({**LISTING_1_1, "description": ["x"]}, "description"),
    ({**LISTING_1_1, "mode": "measure"}, "mode"),
    ({**LISTING_1_1, "mode": 1}, "mode"),
    ({**LISTING_1_1, "clients": "some"}, "clients"),
    ({**LISTING_1_1, "clients": []}, "clients"),
    ({**LISTING_1_1, "clients": [1, 1]}, "clients"),
    ({**LISTING_1_1, "clients": [0]}, "clients"),
    ({**LISTING_1_1, "clients": [True]}, "clients"),
    ({**LISTING_1_1, "clients": [1.5]}, "clients"),
    ({**LISTING_1_1, "clients": 0}, "clients"),
    ({**LISTING_1_1, "clients": -3}, "clients"),
    ({**LISTING_1_1, "clients": True}, "clients"),
    ({**LISTING_1_1, "clients": {"a": 1}}, "clients"),
    ({**LISTING_1_1, "signals": []}, "signals"),
    ({**LISTING_1_1, "signals": "velocity"}, "signals"),
    ({**LISTING_1_1, "signals": ["speed", "speed"]}, "signals"),
    ({**LISTING_1_1, "signals": [1]}, "signals"),
    ({**LISTING_1_1, "signals": 3}, "signals"),
    ({**LISTING_1_1, "onboard": "avg_speed"}, "onboard"),
    ({**LISTING_1_1, "onboard": "fedavg"}, "onboard"),
    ({**LISTING_1_1, "onboard": None}, "onboard"),
    ({**LISTING_1_1, "offboard": "histogram"}, "offboard"),
    ({**LISTING_1_1, "offboard": 3}, "offboard"),
    ({**LISTING_1_1, "frequency": 0}, "frequency"),
    ({**LISTING_1_1, "frequency": 101}, "frequency"),
    ({**LISTING_1_1, "frequency": 1.5}, "frequency"),
    ({**LISTING_1_1, "frequency": "1"}, "frequency"),
    ({**LISTING_1_1, "frequency": True}, "frequency"),
    ({**LISTING_1_1, "frequency": math.nan}, "frequency"),
    ({**LISTING_1_1, "frequency": math.inf}, "frequency"),
    ({**LISTING_1_1, "samples": 0}, "samples"),
    ({**LISTING_1_1, "samples": 1_000_001}, "samples"),
    ({**LISTING_1_1, "samples": 10**5000}, "samples"),
    ({**LISTING_1_1, "samples": 1e300}, "samples"),
    ({**LISTING_1_1, "iterations": -1}, "iterations"),
    ({**LISTING_1_1, "iterations": 1_000_001}, "iterations"),
    ({**LISTING_1_1, "iterations": False}, "iterations"),
    ({**LISTING_1_1, "timeout": 0}, "timeout"),
    ({**LISTING_1_1, "timeout": -1}, "timeout"),
    ({**LISTING_1_1, "timeout": 86_401}, "timeout"),
    ({**LISTING_1_1, "timeout": math.inf}, "timeout"),
    ({**LISTING_1_1, "timeout": math.nan}, "timeout"),
    ({**LISTING_1_1, "timeout": True}, "timeout"),
    ({**LISTING_1_1, "timeout": "60"}, "timeout"),
    ({**THRESHOLD, "threshold": math.nan}, "threshold"),
    ({**THRESHOLD, "threshold": "high"}, "threshold"),
    ({**THRESHOLD, "threshold": 10**400}, "threshold"),
    ({**THRESHOLD, "direction": "up"}, "direction"),
    ({**SAMPLE, "sample_size": 0}, "sample_size"),
    ({**SAMPLE, "sample_size": 1001}, "sample_size"),
    ({**SAMPLE, "sample_size": 2.5}, "sample_size"),
    ({**HISTOGRAM, "bins": 0}, "bins"),
    ({**HISTOGRAM, "bins": 1001}, "bins"),
    ({**DEPLOY, "filename": "module.txt"}, "filename"),
    ({**DEPLOY, "filename": ".py"}, "filename"),
    ({**DEPLOY, "filename": 7}, "filename"),
    ({**DEPLOY, "name": "x" * 201}, "name"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_VALUES)
def test_a_bad_value_is_rejected_naming_its_field(raw: dict[str, Any], field: str) -> None:
    error = problems(raw)
    assert error.fields == [field], str(error)
    assert field in str(error)
    assert error.issues[0].rule


BAD_COMBINATIONS: list[tuple[dict[str, Any], str]] = [
    ({**LISTING_1_1, "mode": "monitoring"}, "onboard"),
    ({**LISTING_1_1, "mode": "federated", "signals": ["rpm", "speed"]}, "onboard"),
    ({**FEDERATED, "offboard": "average"}, "offboard"),
    ({**FEDERATED, "signals": ["speed"]}, "signals"),
    ({**FEDERATED, "mode": "measurement", "offboard": "collect"}, "onboard"),
    ({**LISTING_1_1, "offboard": "fedavg"}, "offboard"),
    ({**HISTOGRAM, "offboard": "average"}, "offboard"),
    ({**THRESHOLD, "offboard": "max"}, "offboard"),
    ({**{k: v for k, v in THRESHOLD.items() if k != "threshold"}}, "threshold"),
    ({**LISTING_1_1, "threshold": 3}, "threshold"),
    ({**LISTING_1_1, "direction": "above"}, "direction"),
    ({**LISTING_1_1, "sample_size": 3}, "sample_size"),
    ({**SAMPLE, "samples": 5, "sample_size": 6}, "sample_size"),
    ({**LISTING_1_1, "bins": 3}, "bins"),
    ({**LISTING_1_1, "filename": "m.py"}, "filename"),
    ({**DEPLOY, "signals": ["speed"]}, "signals"),
    ({**DEPLOY, "mode": "deploy_offboard"}, "clients"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_COMBINATIONS)
def test_a_bad_combination_is_reported_once_naming_the_field(raw: dict[str, Any], field: str) -> None:
    error = problems(raw)
    assert error.fields == [field], str(error)


def test_a_combination_is_not_checked_when_one_of_its_fields_is_bad() -> None:
    error = problems({**LISTING_1_1, "mode": "monitoring", "onboard": "averge"})
    assert error.fields == ["onboard"]
    assert "did you mean 'average'" in error.issues[0].rule


def test_a_wrong_onboard_method_is_not_blamed_on_the_offboard_method_too() -> None:
    error = problems({**FEDERATED, "onboard": "average"})
    assert error.fields == ["onboard"]


def test_custom_code_and_deployment_are_accepted() -> None:
    for onboard, offboard in [("custom", "custom"), ("custom", "fedavg"), ("histogram", "custom")]:
        spec = validate_spec({**LISTING_1_1, "onboard": onboard, "offboard": offboard})
        assert isinstance(spec, AssignmentSpec) and spec.onboard == onboard
    monitor = validate_spec({**LISTING_1_1, "mode": "monitoring", "onboard": "custom"})
    assert isinstance(monitor, AssignmentSpec)
    deploy = validate_spec(DEPLOY)
    assert deploy == DeploySpec(mode="deploy_onboard", filename="my_module.py", clients=(1, 2))
    cloud = validate_spec({"mode": "Deploy_Offboard", "filename": "agg.py"})
    assert isinstance(cloud, DeploySpec) and cloud.clients == "all"
    assert validate_spec({"mode": "deploy_onboard", "filename": "m.py", "clients": 3}) == (
        DeploySpec(mode="deploy_onboard", filename="m.py", clients=3)
    )


# ---------------------------------------------------------------- messages


def test_all_missing_keys_are_listed_at_once() -> None:
    error = problems({"mode": "measurement"})
    missing = {"name", "clients", "signals", "onboard", "frequency", "samples", "iterations"}
    assert set(error.fields) == missing
    assert all(i.value is MISSING and i.rule == "required" for i in error.issues)
    assert "got nothing" in str(error)


def test_missing_keys_of_the_deploy_form_are_listed() -> None:
    assert problems({"mode": "deploy_onboard"}).fields == ["filename"]
    assert set(problems({}).fields) == set(spec_module.REQUIRED_ANALYTIC)


def test_misspelt_key_gets_a_did_you_mean() -> None:
    raw = {k: v for k, v in LISTING_1_1.items() if k != "samples"}
    error = problems({**raw, "sampels": 1000})
    assert "unknown key; did you mean 'samples'?" in rules_for(error, "sampels")
    assert rules_for(error, "samples") == ["required"]
    assert rules_for(problems({**LISTING_1_1, "colour": "red"}), "colour") == ["unknown key"]


def test_misspelt_method_gets_a_did_you_mean() -> None:
    error = problems({**LISTING_1_1, "onboard": "averge"})
    assert "did you mean 'average'?" in rules_for(error, "onboard")[0]
    error = problems({**LISTING_1_1, "mode": "Measurment"})
    assert "did you mean 'measurement'?" in rules_for(error, "mode")[0]


def test_misspelt_signal_gets_a_did_you_mean() -> None:
    error = problems({**LISTING_1_1, "signals": ["sped", "rpm"]})
    assert error.fields == ["signals"]
    assert error.issues[0].value == "sped"
    assert "did you mean 'speed'?" in error.issues[0].rule


def test_bad_and_repeated_client_ids_are_named() -> None:
    error = problems({**LISTING_1_1, "clients": [4, 0, "x", 4, 5, 5]})
    text = " ".join(rules_for(error, "clients"))
    assert "bad: 0, 'x'" in text
    assert "repeated: 4, 5" in text


def test_several_problems_are_reported_together() -> None:
    raw = {
        **LISTING_1_1,
        "name": "",
        "mode": "measure",
        "clients": 0,
        "frequency": 500,
        "timeout": -1,
        "extra": True,
    }
    error = problems(raw)
    assert set(error.fields) == {"name", "mode", "clients", "frequency", "timeout", "extra"}
    assert str(error).startswith("the assignment spec has 6 problems:")


@pytest.mark.parametrize("raw", [None, 3, "spec", ["name"], b"{}", {1: "x"}, {("a",): 1}])
def test_anything_but_a_mapping_with_string_keys_is_a_spec_error(raw: object) -> None:
    error = problems(raw)
    assert "spec" in error.fields


def test_values_that_cannot_be_printed_still_give_a_readable_error() -> None:
    error = problems({**LISTING_1_1, "samples": 10**5000, "clients": [10**5000]})
    text = str(error)
    assert "samples" in text and "clients" in text
    assert len(text) < 2000


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"mode": "deploy_onboard", "filename": "\ud800.py"}, "filename"),
        ({**LISTING_1_1, "name": "speed \udfff"}, "name"),
        ({**LISTING_1_1, "description": "\ud83d"}, "description"),
    ],
)
def test_a_lone_surrogate_in_a_string_is_a_spec_error_naming_the_field(
    raw: dict[str, Any], field: str
) -> None:
    error = problems(raw)
    assert [i.field for i in error.issues] == [field]
    assert "lone surrogates" in error.issues[0].rule


# ---------------------------------------------------------------- wire and schema


@pytest.mark.parametrize(
    "raw",
    [
        LISTING_1_1,
        THRESHOLD,
        SAMPLE,
        HISTOGRAM,
        FEDERATED,
        DEPLOY,
        {**LISTING_1_1, "clients": [5, 2]},
        {**LISTING_1_1, "clients": 3},
        {"mode": "deploy_offboard", "filename": "agg.py", "name": "agg"},
    ],
)
def test_a_spec_survives_the_wire(raw: dict[str, Any]) -> None:
    spec = validate_spec(raw)
    wire = spec_to_wire(spec)
    assert validate_spec(json.loads(json.dumps(wire))) == spec
    assert validate_spec(spec.model_dump(mode="json")) == spec


def test_specs_are_frozen() -> None:
    spec = validate_spec(LISTING_1_1)
    with pytest.raises(ValueError):
        spec.name = "other"
    assert hash(spec) == hash(validate_spec(spec_to_wire(spec)))


def test_the_schema_is_json_and_names_every_field() -> None:
    schema = spec_json_schema()
    text = json.dumps(schema)
    assert schema["title"] and schema["description"]
    defs = json.loads(text)["$defs"]
    for model in (AssignmentSpec, DeploySpec):
        properties = defs[model.__name__]["properties"]
        assert set(properties) == set(model.model_fields)
        assert all(p.get("description") for p in properties.values())
    assert set(defs["AssignmentSpec"]["required"]) == set(spec_module.REQUIRED_ANALYTIC)
    assert set(defs["DeploySpec"]["required"]) == {"mode", "filename"}


# ---------------------------------------------------------------- anything at all

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
known_keys = st.sampled_from([*spec_module.ALL_KEYS, "sampels", "mode"])
plausible = st.one_of(
    json_values,
    st.sampled_from([*MODES, *ONBOARD_METHODS, *OFFBOARD_METHODS, *SIGNAL_NAMES, "all", "m.py"]),
    st.lists(st.sampled_from(SIGNAL_NAMES), max_size=3),
    st.lists(st.integers(-2, 5), max_size=4),
    st.integers(-5, 2_000_000),
    st.just(10**5000),
)


def assert_spec_or_spec_error(raw: object) -> None:
    try:
        result = validate_spec(raw)
    except SpecError as error:
        assert error.issues
        assert "could not be checked" not in str(error)  # the catch-all is never needed
    else:
        assert isinstance(result, (AssignmentSpec, DeploySpec))
        assert validate_spec(spec_to_wire(result)) == result


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_gives_a_spec_or_a_spec_error(raw: object) -> None:
    assert_spec_or_spec_error(raw)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(known_keys, plausible, max_size=10))
def test_any_dict_of_known_keys_gives_a_spec_or_a_spec_error(raw: dict[str, object]) -> None:
    assert_spec_or_spec_error(raw)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(LISTING_1_1)), plausible)
def test_changing_one_field_of_a_valid_spec_gives_a_spec_or_a_spec_error(key: str, value: object) -> None:
    assert_spec_or_spec_error({**LISTING_1_1, key: value})


def test_federated_collect_over_several_iterations_is_refused_on_offboard() -> None:
    with pytest.raises(SpecError) as err:
        validate_spec({**FEDERATED, "offboard": "collect", "iterations": 3})
    assert err.value.fields == ["offboard"]
    assert "fedavg" in str(err.value)
