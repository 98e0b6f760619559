"""The registry of methods: one object per method, read by the spec, the schema, edge and cloud."""

from __future__ import annotations

import math
from typing import Any

import pytest

from oodida_cloud.aggregate import offboard_builtins
from oodida_core.methods import (
    OFFBOARD,
    ONBOARD,
    OnboardMethod,
    UnknownMethod,
    offboard_method,
    onboard_method,
    parameters,
    register,
    registered,
    resolve,
)
from oodida_core.protocol.errors import SpecError
from oodida_core.spec import fields as spec_fields
from oodida_core.spec.model import AssignmentSpec, method_parameters, validate_spec
from oodida_edge.onboard import builtin_methods
from tests.system.toy_methods import RANGE

LISTING = dict(spec_fields.LISTING_1_1)


def issues(spec: dict[str, Any]) -> dict[str, str]:
    try:
        validate_spec(spec)
    except SpecError as e:
        return {i.field: i.rule for i in e.issues}
    return {}


def test_every_builtin_is_registered_in_the_order_the_spec_lists_them_custom_last() -> None:
    assert list(ONBOARD) == [
        *("average", "min", "max", "median", "sum", "std", "variance", "count"),
        *("collect", "sample", "histogram", "threshold", "train", "quantile", "custom"),
    ]
    assert list(OFFBOARD) == [
        *("collect", "average", "min", "max", "median", "sum", "quantile", "fedavg"),
        *("fedavgm", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum", "custom"),
    ]


def test_the_spec_vocabulary_is_a_view_of_the_registry() -> None:
    assert tuple(ONBOARD) == spec_fields.ONBOARD_METHODS
    assert tuple(OFFBOARD) == spec_fields.OFFBOARD_METHODS
    assert spec_fields.METHOD_ALIASES == {"mean": "average"}
    assert tuple(parameters()) == spec_fields.PARAMETER_KEYS
    assert set(parameters()) == {
        *("threshold", "direction", "sample_size", "bins", "q", "proximal_mu"),
        *("server_learning_rate", "server_momentum", "eta", "beta_1", "beta_2", "tau"),
        *("beta", "num_malicious_clients", "num_clients_to_keep"),
    }
    assert spec_fields.OFFBOARD_FOR_ONBOARD["train"] == (
        *("collect", "fedavg", "fedavgm", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum"),
    )
    assert spec_fields.OFFBOARD_FOR_ONBOARD["histogram"] == ("collect", "sum")
    assert spec_fields.OFFBOARD_FOR_ONBOARD["custom"] == tuple(OFFBOARD)


def test_custom_is_a_method_whose_function_runs_elsewhere() -> None:
    assert ONBOARD["custom"].elsewhere and OFFBOARD["custom"].elsewhere
    assert "custom" not in builtin_methods() and "custom" not in offboard_builtins()
    assert all(OFFBOARD["custom"].fits(m) for m in ONBOARD.values())
    assert all(m.fits(ONBOARD["custom"]) for m in OFFBOARD.values())


def test_a_name_resolves_in_any_case_with_blanks_and_aliases() -> None:
    assert resolve("  MEAN ") == "average"
    assert onboard_method("Quantile") is ONBOARD["quantile"]
    assert offboard_method("mean") is OFFBOARD["average"]


def test_an_unknown_name_or_a_name_of_the_other_side_is_an_unknown_method() -> None:
    with pytest.raises(UnknownMethod, match="on-board"):
        onboard_method("fedavg")
    with pytest.raises(UnknownMethod, match="off-board"):
        offboard_method("histogram")


def test_a_name_or_alias_already_taken_on_that_side_is_refused() -> None:
    with pytest.raises(ValueError, match="already taken: average"):
        register(OnboardMethod("average", "again", "numbers"))
    with pytest.raises(ValueError, match="already taken: mean"):
        register(OnboardMethod("avg", "again", "numbers", aliases=("mean",)))


def test_a_registered_method_is_known_inside_the_block_only() -> None:
    spec = {**LISTING, "onboard": "Range", "offboard": "median"}
    assert "onboard" in issues(spec)
    with registered(RANGE):
        assert list(ONBOARD)[-2:] == ["range", "custom"]  # custom stays last
        assert issues(spec) == {}
        assert "range" in builtin_methods()
    assert "range" not in ONBOARD and "onboard" in issues(spec)


def test_each_parameter_has_its_type_range_and_default_in_one_place() -> None:
    fields = AssignmentSpec.model_json_schema()["properties"]
    q = fields["q"]["anyOf"][0]
    assert (q["minimum"], q["maximum"]) == (0, 1)
    assert fields["bins"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert parameters()["bins"].default == 10 and parameters()["q"].default == 0.5
    assert parameters()["threshold"].required


# ---------------------------------------------------------------- q in the spec


@pytest.mark.parametrize(
    ("onboard", "offboard"),
    [("quantile", "collect"), ("average", "quantile"), ("quantile", "quantile"), ("custom", "quantile")],
)
def test_q_is_allowed_with_onboard_or_offboard_quantile_and_serves_both(onboard: str, offboard: str) -> None:
    spec = validate_spec({**LISTING, "onboard": onboard, "offboard": offboard, "q": 0.9})
    assert isinstance(spec, AssignmentSpec) and spec.q == 0.9
    assert method_parameters(spec) == {"q": 0.9}


def test_q_defaults_to_the_median_when_a_quantile_method_is_used() -> None:
    spec = validate_spec({**LISTING, "onboard": "quantile", "offboard": "QUANTILE", "q": None})
    assert isinstance(spec, AssignmentSpec) and spec.q == 0.5
    other = validate_spec(LISTING)
    assert isinstance(other, AssignmentSpec) and other.q is None


def test_q_without_a_quantile_method_is_refused_naming_both_sides() -> None:
    found = issues({**LISTING, "q": 0.5})
    assert found == {"q": "only allowed with onboard 'quantile' or offboard 'quantile'"}


@pytest.mark.parametrize("q", [-0.1, 1.5, "0.5", True, math.nan, math.inf, 10**400])
def test_q_outside_zero_to_one_or_not_a_number_is_refused(q: object) -> None:
    assert issues({**LISTING, "onboard": "quantile", "q": q}) == {"q": "must be a number from 0 to 1"}


def test_quantile_offboard_does_not_fit_histograms_thresholds_or_models() -> None:
    for onboard, extra in (("histogram", {}), ("threshold", {"threshold": 1.0})):
        found = issues({**LISTING, "onboard": onboard, "offboard": "quantile", **extra})
        assert found["offboard"].startswith(f"does not fit onboard {onboard!r}")
    federated = {**LISTING, "mode": "federated", "signals": ["speed", "rpm"], "onboard": "train"}
    assert "federated mode needs offboard" in issues({**federated, "offboard": "quantile"})["offboard"]
