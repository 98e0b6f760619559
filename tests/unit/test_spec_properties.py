"""Property-based tests of the spec: thousands of specs from its grammar, valid and broken.

Every input gives a spec or a SpecError, never another exception and never the validator's
catch-all; an accepted spec survives the wire; a SpecError names every field that was broken,
and prints briefly however large or odd the values. The number of examples is ten times the
Hypothesis profile's (``HYPOTHESIS_PROFILE=thorough`` in tests/conftest.py for a longer run).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_strategies import broken_specs, json_values, odd_values, valid_specs

from oodida_core.protocol.errors import SpecError
from oodida_core.spec.model import (
    ALL_KEYS,
    AssignmentSpec,
    DeploySpec,
    key_label,
    spec_to_wire,
    validate_spec,
)

PURE = settings(
    max_examples=10 * settings.default.max_examples,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CATCH_ALL = "could not be checked"


def outcome(raw: object) -> AssignmentSpec | DeploySpec | SpecError:
    """validate_spec's answer; any exception but SpecError fails the test."""
    try:
        return validate_spec(raw)
    except SpecError as error:
        return error


def assert_readable(error: SpecError) -> None:
    assert error.issues
    assert CATCH_ALL not in str(error)  # a rule caught it, not the guard of last resort
    for issue in error.issues:
        assert len(str(issue)) < 600, str(issue)[:200]  # huge values are shown cut short
    assert str(error).count("\n") == len(error.issues)


def assert_round_trip(spec: AssignmentSpec | DeploySpec) -> None:
    wire = spec_to_wire(spec)
    assert validate_spec(json.loads(json.dumps(wire, allow_nan=False))) == spec
    assert validate_spec(wire) == spec


@PURE
@given(valid_specs())
def test_every_spec_of_the_grammar_is_accepted_and_survives_the_wire(raw: dict[str, Any]) -> None:
    result = outcome(raw)
    assert not isinstance(result, SpecError), f"{raw!r:.300}\n{result}"
    assert isinstance(result, DeploySpec) == ("filename" in raw)
    assert_round_trip(result)


@PURE
@given(broken_specs())
def test_a_broken_spec_is_refused_naming_every_broken_field(case: tuple[dict[str, Any], set[str]]) -> None:
    raw, broken = case
    error = outcome(raw)
    assert isinstance(error, SpecError), f"accepted {raw!r:.300}"
    assert_readable(error)
    assert broken <= set(error.fields), f"{sorted(broken)} not all in {error.fields}"


@PURE
@given(json_values)
def test_any_json_value_is_a_spec_or_a_spec_error(raw: object) -> None:
    result = outcome(raw)
    if isinstance(result, SpecError):
        assert_readable(result)
    else:
        assert_round_trip(result)


@PURE
@given(
    st.dictionaries(
        st.sampled_from([*ALL_KEYS, "nmae", "Samples", ""]) | st.text(max_size=70),
        json_values | odd_values,
        max_size=12,
    )
)
def test_any_mapping_of_any_values_is_a_spec_or_a_spec_error(raw: dict[str, object]) -> None:
    result = outcome(raw)
    if isinstance(result, SpecError):
        assert_readable(result)
        assert {key_label(k) for k in raw if k not in ALL_KEYS} <= set(result.fields)
    else:
        assert_round_trip(result)


@PURE
@given(valid_specs(), st.sampled_from(sorted(ALL_KEYS)), json_values | odd_values)
def test_one_field_set_to_anything_gives_a_spec_or_a_spec_error(
    raw: dict[str, Any], key: str, value: object
) -> None:
    result = outcome({**raw, key: value})
    if isinstance(result, SpecError):
        assert_readable(result)
    else:
        assert_round_trip(result)


class _Hostile(Mapping[str, object]):
    """A mapping that fails while it is read."""

    def __init__(self, fail_after: int) -> None:
        self.fail_after = fail_after

    def __getitem__(self, key: str) -> object:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from ("name", "mode")[: self.fail_after]
        raise RuntimeError("the mapping broke")

    def __len__(self) -> int:
        return 2


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2))
def test_a_mapping_that_breaks_while_read_is_still_only_a_spec_error(fail_after: int) -> None:
    result = outcome(_Hostile(fail_after))
    assert isinstance(result, SpecError)  # here the guard of last resort does its job
