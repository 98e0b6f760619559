"""The JSON Schema of a spec accepts exactly what validate_spec accepts (oodida_core.spec.schema).

Checked on every spec written in README.md, examples/ and tests/, on specs Hypothesis draws
from the schema (hypothesis-jsonschema), on specs the library's own strategies draw, valid and
broken, and on one-key mutations of valid specs. Where the schema cannot say a rule (its
description lists them), the library's only complaint must be that rule.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.internal.conjecture.utils as conjecture_utils
import hypothesis_jsonschema._from_schema as hjs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from oodida_core.protocol.errors import SpecError
from oodida_core.spec.fields import ANALYTIC_MODES
from oodida_core.spec.model import ALL_KEYS, LISTING_1_1, MODES, spec_json_schema, validate_spec
from oodida_core.spec.schema import GAPS, words
from tests.spec_strategies import broken_specs, json_values, valid_specs

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = spec_json_schema()
VALIDATOR = Draft202012Validator(SCHEMA)
GAP_RULES = ("must be at most samples", "valid Unicode")
"""The library's rules the schema cannot say (named in GAPS, in the schema's description)."""


def library(spec: object) -> list[str]:
    """The library's complaints about spec, as 'field: rule' ([] when it accepts it)."""
    try:
        validate_spec(spec)
    except SpecError as e:
        return [f"{i.field}: {i.rule}" for i in e.issues]
    return []


def assert_agree(spec: object) -> None:
    issues = library(spec)
    valid = VALIDATOR.is_valid(spec)
    if valid and issues:  # only a rule the schema cannot say may tell them apart
        assert all(any(rule in issue for rule in GAP_RULES) for issue in issues), (spec, issues)
    else:
        assert valid == (not issues), (spec, issues, [e.message for e in VALIDATOR.iter_errors(spec)])


def as_json(value: object) -> Any:
    """What a JSON client would send for value, or None if JSON cannot hold it."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return None


# ---------------------------------------------------------------- written specs


def _value(node: ast.expr, names: dict[str, Any]) -> Any:
    """A literal, a module-level literal named, or a dict of those with ** of those."""
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                out.update(_value(value, names))
            else:
                out[ast.literal_eval(key)] = _value(value, names)
        return out
    return ast.literal_eval(node)


def _dict_literals(source: str) -> list[dict[str, Any]]:
    """Every dict display with a "mode" or "onboard" key (or a ** of a spec) whose values are
    literals, module-level literals or LISTING_1_1; any other name, call or expression: skipped."""
    tree = ast.parse(source)
    names: dict[str, Any] = {"LISTING_1_1": dict(LISTING_1_1)}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            with contextlib.suppress(ValueError, KeyError, TypeError, SyntaxError):
                names[stmt.targets[0].id] = _value(stmt.value, names)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        try:
            value = _value(node, names)
        except (ValueError, KeyError, TypeError, SyntaxError):  # a call, an expression, a local name
            continue
        if isinstance(value, dict) and {"mode", "onboard"} & set(value) and as_json(value) is not None:
            found.append(as_json(value))
    return found


def written_specs() -> list[tuple[str, dict[str, Any]]]:
    specs: list[tuple[str, dict[str, Any]]] = []
    readme = (ROOT / "README.md").read_text()
    for lang, block in re.findall(r"```(\w*)\n(.*?)```", readme, re.S):
        if lang == "json":
            value = json.loads(block)
            if isinstance(value, dict):
                specs.append(("README.md json", value))
        elif lang == "python":
            specs += [("README.md python", d) for d in _dict_literals(block)]
    for path in sorted([*ROOT.glob("examples/**/*.py"), *ROOT.glob("tests/**/*.py")]):
        specs += [(str(path.relative_to(ROOT)), d) for d in _dict_literals(path.read_text())]
    for path in sorted(ROOT.glob("examples/**/*.json")):
        value = json.loads(path.read_text())
        if isinstance(value, dict):
            specs.append((str(path.relative_to(ROOT)), value))
    return specs


WRITTEN = written_specs()


def test_the_collector_finds_the_written_specs_accepted_and_refused() -> None:
    where = [w.split(" ")[0].split("/")[0] for w, _ in WRITTEN]
    accepted = [s for _, s in WRITTEN if not library(s)]
    assert len(WRITTEN) >= 180 and len(accepted) >= 90 and len(WRITTEN) - len(accepted) >= 70
    assert where.count("README.md") >= 3 and where.count("examples") >= 10 and where.count("tests") >= 150
    readme = [s for where, s in WRITTEN if where.startswith("README")]
    assert dict(LISTING_1_1) in readme and any(s.get("signals") == "speed" for s in readme)


@pytest.mark.parametrize("where, spec", WRITTEN, ids=[f"{w}-{i}" for i, (w, _) in enumerate(WRITTEN)])
def test_a_written_spec_is_valid_against_the_schema_iff_the_library_accepts_it(
    where: str, spec: dict[str, Any]
) -> None:
    assert_agree(spec)


def test_readme_listing_and_a_single_signal_name_are_valid() -> None:
    assert VALIDATOR.is_valid(dict(LISTING_1_1))
    assert VALIDATOR.is_valid({**LISTING_1_1, "signals": "SPEED", "onboard": "Mean"})


# ---------------------------------------------------------------- drawn specs


class _LegacyMany:
    """hypothesis-jsonschema 0.23.1 drives Hypothesis's many() by .more(), which Hypothesis
    6.170 replaced by a with-block and an iterator: this gives it the old face."""

    def __init__(self, data: Any, **sizes: Any) -> None:
        self._many = conjecture_utils.many(data, **sizes)
        self._many.__enter__()
        self._elements = iter(self._many)

    def more(self) -> bool:
        try:
            next(self._elements)
        except StopIteration:
            self._many.__exit__(None)
            return False
        return True

    def reject(self) -> None:
        self._many.reject()


def _cached(build: Any) -> Any:
    """hypothesis-jsonschema rebuilds a strategy for every key of every object it draws:
    for this schema that takes seconds per spec. A strategy for the same schema is the same."""
    built: dict[tuple[str, int], tuple[Any, Any]] = {}

    def cached(schema: Any, *, alphabet: Any, custom_formats: Any) -> Any:
        key = (json.dumps(schema, sort_keys=True, default=repr), id(alphabet))
        if key not in built:
            built[key] = (build(schema, alphabet=alphabet, custom_formats=custom_formats), alphabet)
        return built[key][0]

    return cached


@pytest.fixture(scope="module")
def schema_specs() -> Iterator[Any]:
    """from_schema(SCHEMA), with hypothesis-jsonschema patched while the module's tests run."""
    with pytest.MonkeyPatch.context() as patch:
        if not hasattr(conjecture_utils.many, "more"):
            patch.setattr(hjs, "cu", type("Utils", (), {"many": _LegacyMany}))
        patch.setitem(hjs.__dict__, "__from_schema", _cached(hjs.__dict__["__from_schema"]))
        patch.setattr(hjs, "merged_as_strategies", _cached(hjs.merged_as_strategies))
        branches = [from_schema(b) for b in _branch_schemas(SCHEMA)]
        yield st.one_of(from_schema(SCHEMA["$defs"]["DeploySpec"] | {"$defs": SCHEMA["$defs"]}), *branches)


def _branch_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The assignment schema once per branch of its anyOf, the branch merged into the
    properties by hand: hypothesis-jsonschema cannot merge them and would draw whole specs
    until one fits a branch, too rarely once there are many method parameters."""
    spec = schema["$defs"]["AssignmentSpec"]
    out = []
    for branch in spec["anyOf"]:
        props = dict(spec["properties"])
        for key, rule in branch["properties"].items():
            props[key] = rule if rule == {"type": "null"} else {"allOf": [props[key], rule]}
        required = [*spec["required"], *branch.get("required", ())]
        base = {k: v for k, v in spec.items() if k != "anyOf"}
        out.append(base | {"properties": props, "required": required, "$defs": schema["$defs"]})
    return out


def test_every_spec_drawn_from_the_schema_is_accepted_by_the_library(schema_specs: Any) -> None:
    drawn: list[dict[str, Any]] = []

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(schema_specs)
    def check(spec: dict[str, Any]) -> None:
        assert VALIDATOR.is_valid(spec)
        assert_agree(spec)
        drawn.append(spec)

    check()
    modes = {spec["mode"].lower() for spec in drawn}
    assert len(modes) >= 3, modes  # the draws reach both forms, not one corner


@settings(max_examples=300, deadline=None)
@given(valid_specs())
def test_every_spec_the_library_accepts_is_valid_against_the_schema(spec: dict[str, Any]) -> None:
    assert not library(spec)
    assert VALIDATOR.is_valid(as_json(spec)), [e.message for e in VALIDATOR.iter_errors(as_json(spec))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_specs())
def test_a_broken_spec_is_refused_by_the_schema_too(broken: tuple[dict[str, Any], set[str]]) -> None:
    spec = as_json(broken[0])
    if spec is None:
        return  # not JSON (NaN, bytes, 10**5000, deep nesting): the schema is about JSON
    assert library(spec)
    assert_agree(spec)


plausible = st.one_of(
    json_values,
    st.sampled_from([*MODES, "Measurement", "MEAN", "train", "fedavg", "all", "ALL", "m.py", "a/.py"]),
    st.sampled_from(["speed", ["speed", "Speed"], ["rpm", "speed"], "above", "BELOW", 0, 1, 2, 1.0]),
    st.lists(st.integers(-2, 5), max_size=4),
    st.integers(-5, 2_000_000),
    st.floats(min_value=-1e9, max_value=1e9),
)


@settings(max_examples=400, deadline=None)
@given(valid_specs(), st.sampled_from([*ALL_KEYS, "keep", "sampels", "Mode"]), plausible, st.booleans())
def test_schema_and_library_agree_on_a_valid_spec_with_one_key_changed(
    spec: dict[str, Any], key: str, value: object, drop: bool
) -> None:
    changed = dict(spec)
    if drop:
        changed.pop(key, None)
    else:
        changed[key] = value
    assert_agree(as_json(changed))


@pytest.mark.parametrize("mode", ANALYTIC_MODES)
@pytest.mark.parametrize("keep", [1, 1_000_000, 5.0, 0, 1_000_001, -1, 2.5, "3", True, None, [1]])
def test_keep_from_the_field_tables_is_in_the_schema_with_its_range(mode: str, keep: object) -> None:
    extra: dict[str, dict[str, object]] = {
        "measurement": {},
        "monitoring": {"onboard": "threshold", "threshold": 90},
        "federated": {"onboard": "train", "offboard": "fedavg", "signals": ["speed", "rpm"]},
    }
    spec = {**LISTING_1_1, "mode": mode, **extra[mode], "iterations": 5, "keep": keep}
    assert_agree(spec)
    assert VALIDATOR.is_valid(spec) == (keep in (1, 1_000_000, 5.0, None) and keep is not True)


@settings(max_examples=300)
@given(st.text(max_size=14) | st.sampled_from(["k\u212aep", "KEEP", "measurement\n", "Mean", "mEaN "]))
def test_a_word_pattern_matches_exactly_the_strings_whose_lower_case_is_a_word(text: str) -> None:
    schema = words(["keep", "measurement", "average"], {"mean": "average"})
    lowered = {"mean": "average"}.get(text.lower(), text.lower())
    assert bool(re.search(schema["pattern"], text)) == (lowered in ("keep", "measurement", "average"))


def test_no_character_beyond_plane_1_changes_in_lower_case() -> None:
    """spec_schema looks for case spellings in planes 0 and 1 only."""
    assert all(chr(c).lower() == chr(c) for c in range(0x20000, sys.maxunicode + 1))


def test_the_description_names_what_the_schema_cannot_say() -> None:
    assert GAPS in SCHEMA["description"] and "sample_size" in GAPS and "Unicode" in GAPS


# ---------------------------------------------------------------- the command


def test_oodida_schema_prints_the_schema_and_it_is_a_valid_draft_2020_12_schema() -> None:
    oodida = Path(sys.executable).with_name("oodida")
    out = subprocess.run([str(oodida), "schema"], capture_output=True, text=True, timeout=60, check=True)
    printed = json.loads(out.stdout)
    assert printed == spec_json_schema()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(printed)
