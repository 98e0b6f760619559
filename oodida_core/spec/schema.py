"""The JSON Schema (draft 2020-12) of what `validate_spec` accepts, in every input form.

The contract for clients in other languages. Nothing here is a second copy of the rules:
- the keys, required keys, vocabularies (modes, methods, aliases, signals) and limits come
  from `oodida_core.spec.fields`, and each plain field's value schema from the pydantic
  model's field (so a new key such as `keep` appears with its range and description);
- the input forms the model does not show (any case, 'mean', one signal for a list, blank
  names, JSON null for "not given") are written here once, from those same tables;
- the rules that combine fields come from the method registry (`oodida_core.methods`), which
  `spec._check_combinations` reads too: the modes each method is allowed in, which off-board
  methods fit which on-board output, the parameters each takes or requires, the pairs that
  allow only one iteration. The modes' own rules (signal counts, deploy forms) are read off
  `validate_spec` itself: each case is tried once, and the schema lists what passed.

String patterns are ECMA-262 and mean the same in Python's `re`: case-insensitive words are
spelt letter by letter (`[Mm][Ee]...`, every character whose lower case is that letter), and
`$(?!\\n)` ends a pattern (the lookahead only matters to engines whose `$` also matches
before a final newline, as Python's does).
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from oodida_core.methods import registry
from oodida_core.protocol.errors import SpecError
from oodida_core.protocol.signals import MAX_SIGNAL_NAME, SIGNAL_NAMES, SIGNALS, VSS_PATTERN
from oodida_core.protocol.tags import MAX_FILTER_VALUES, MAX_TAGS, TAG_KEY_PATTERN, TAG_VALUE_PATTERN
from oodida_core.spec.experiment import experiment_schema
from oodida_core.spec.fields import (
    ANALYTIC_KEYS,
    ANALYTIC_MODES,
    DEPLOY_KEYS,
    DEPLOY_MODES,
    LISTING_1_1,
    MAX_CLIENT_ID,
    MAX_SIGNALS,
    METHOD_ALIASES,
    OFFBOARD_METHODS,
    ONBOARD_METHODS,
    REQUIRED_ANALYTIC,
    REQUIRED_DEPLOY,
)

Schema = dict[str, Any]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
NULLABLE = tuple(k for k in (*ANALYTIC_KEYS, "filename") if k not in (*REQUIRED_ANALYTIC, *REQUIRED_DEPLOY))
"""Optional keys whose JSON null means "not given" (a required key's null is a wrong value)."""
LARGEST_DOUBLE = sys.float_info.max
_END = "$(?!\\n)"
_CONTROL = "".join(chr(c) for c in (*range(32), 127))

GAPS = (
    "What this schema cannot say, and the library checks: a sample_size of at most samples; "
    "strings that are valid Unicode (no unpaired surrogate escapes such as \\ud800); and, for "
    "Python callers only, integers just above the largest double (threshold accepts integers "
    "that round to a finite double; the schema stops at 1.7976931348623157e308)."
)


# ---------------------------------------------------------------- patterns


def _escape(text: str) -> str:
    """A regex literal for text, spelt alike in ECMA-262 and Python (non-ASCII as \\uXXXX)."""
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            out.append(ch)
        elif ch.isascii() and ch.isprintable() and ch != " ":
            out.append("\\" + ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else ch)
    return "".join(out)


_CASED_PLANES = 0x20000
"""Every character that has a lower case other than itself lies in Unicode planes 0 and 1."""


@functools.cache
def _lowers_to() -> Mapping[str, str]:
    """For each character, the others whose lower case it is (k: K and the Kelvin sign)."""
    found: dict[str, str] = {}
    for code in range(_CASED_PLANES):
        char = chr(code)
        lower = char.lower()
        if lower != char and len(lower) == 1:
            found[lower] = found.get(lower, "") + char
    return found


@functools.cache
def _whitespace() -> str:
    """What str.strip() removes (all of it lies in plane 0)."""
    return "".join(chr(c) for c in range(0x10000) if chr(c).isspace())


def _any_case(word: str) -> str:
    """A regex for every string whose lower() is word."""
    out = []
    for ch in word:
        others = _lowers_to().get(ch, "")
        out.append(f"[{_escape(others + ch)}]" if others else _escape(ch))
    return "".join(out)


def words(choices: Iterable[str], aliases: Mapping[str, str] | None = None) -> Schema:
    """A string that, lower-cased and its alias resolved, is one of choices."""
    wanted = list(dict.fromkeys(choices))
    spelt = [*wanted, *(a for a, target in (aliases or {}).items() if target in wanted)]
    return {"type": "string", "pattern": "^(?:" + "|".join(_any_case(w) for w in spelt) + ")" + _END}


def _char_class(chars: str, negated: bool = False) -> str:
    """A regex class of chars, runs of three or more written as ranges."""
    codes = sorted({ord(c) for c in chars})
    parts: list[str] = []
    start = 0
    for i in range(1, len(codes) + 1):
        if i == len(codes) or codes[i] != codes[i - 1] + 1:
            run = codes[start:i]
            first, last = _escape(chr(run[0])), _escape(chr(run[-1]))
            parts.append(f"{first}-{last}" if len(run) >= 3 else "".join(_escape(chr(c)) for c in run))
            start = i
    return "[" + ("^" if negated else "") + "".join(parts) + "]"


def _not_blank(schema: Schema) -> Schema:
    return {**schema, "pattern": _char_class(_whitespace(), negated=True)}


# ---------------------------------------------------------------- value schemas


def _client_id() -> Schema:
    return {"type": "integer", "minimum": 1, "maximum": MAX_CLIENT_ID}


def _clients() -> Schema:
    return {
        "anyOf": [
            words(["all"]),
            {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"$ref": "#/$defs/ClientId"}},
            {"$ref": "#/$defs/ClientId"},
            {"$ref": "#/$defs/TagFilter"},
        ]
    }


def _tag_filter() -> Schema:
    """Vehicles chosen by tags (oodida_core.spec.tags): each key one value or a list of them."""
    value = {"type": "string", "pattern": TAG_VALUE_PATTERN.removesuffix("$") + _END}
    values = {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_FILTER_VALUES,
        "uniqueItems": True,
        "items": value,
    }
    tags = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": MAX_TAGS,
        "patternProperties": {TAG_KEY_PATTERN.removesuffix("$") + _END: {"anyOf": [value, values]}},
        "additionalProperties": False,
    }
    k = {"anyOf": [{"$ref": "#/$defs/ClientId"}, {"type": "null"}]}
    return {
        "type": "object",
        "properties": {"tags": tags, "k": k},
        "required": ["tags"],
        "additionalProperties": False,
    }


def _signal_name() -> Schema:
    """A built-in signal by short name or VSS path (any case), or any other VSS path."""
    builtin = words([*SIGNAL_NAMES, *(SIGNALS[s].vss.lower() for s in SIGNAL_NAMES)])
    other = {"type": "string", "maxLength": MAX_SIGNAL_NAME, "pattern": f"^(?:{VSS_PATTERN}){_END}"}
    return {"anyOf": [builtin, other]}


def _signals() -> Schema:
    name = {"$ref": "#/$defs/SignalName"}
    once = [
        {
            "contains": words([s, SIGNALS[s].vss.lower()]),
            "minContains": 0,
            "maxContains": 1,
            "$comment": f"{s} (or {SIGNALS[s].vss}) at most once",
        }
        for s in SIGNAL_NAMES
    ]
    listed = {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_SIGNALS,
        "uniqueItems": True,
        "items": name,
        "allOf": once,
    }
    return {"anyOf": [name, listed]}


def _filename() -> Schema:
    legal = _char_class(_CONTROL, negated=True)
    last = _char_class(_CONTROL + "/\\", negated=True)
    return {"type": "string", "maxLength": 4096, "pattern": f"^{legal}*{last}\\.py{_END}"}


def _input_forms() -> dict[str, Schema]:
    """The fields whose input takes more forms than the canonical model shows."""
    return {
        "mode": words(ANALYTIC_MODES),
        "clients": {"$ref": "#/$defs/Clients"},
        "signals": {"$ref": "#/$defs/Signals"},
        "onboard": words(ONBOARD_METHODS, METHOD_ALIASES),
        "offboard": words(OFFBOARD_METHODS, METHOD_ALIASES),
        **{p.name: words(p.choices) for p in registry.parameters().values() if p.kind == "choice"},
        **{
            p.name: {"type": "number", "minimum": -LARGEST_DOUBLE, "maximum": LARGEST_DOUBLE}
            for p in registry.parameters().values()
            if p.kind == "number" and p.lo is None  # any finite number
        },
        "filename": {"$ref": "#/$defs/Filename"},
        "experiment": experiment_schema(),
    }


_EXAMPLES: dict[str, object] = {
    **{k: v for k, v in LISTING_1_1.items()},
    "threshold": 0.0,
    "direction": "above",
    "description": "",
    "filename": "module.py",
    "experiment": {"id": "3f2a9c1b7d4e", "variant": "A", "variants": ["A", "B"], "seed": 1},
}


def _plain(field_schema: Schema) -> Schema:
    """The model's schema of one field without its title, default, description and null."""
    schema = {k: v for k, v in field_schema.items() if k not in ("title", "default", "description")}
    forms = [f for f in schema.pop("anyOf", []) if f != {"type": "null"}]
    if forms:
        schema.update(forms[0] if len(forms) == 1 else {"anyOf": forms})
    return schema


def _example(key: str, schema: Schema, default: object) -> object:
    if key in _EXAMPLES:
        return _EXAMPLES[key]
    if default is not None:
        return default
    return schema.get("minimum", schema.get("maximum", ""))


def _properties(model: Any, keys: Iterable[str], forms: Mapping[str, Schema]) -> dict[str, Schema]:
    fields = model.model_json_schema()["properties"]
    out: dict[str, Schema] = {}
    for key in keys:
        value = forms.get(key) or _plain(fields[key])
        default = model.model_fields[key].default
        prop: Schema = {"description": model.model_fields[key].description or key}
        prop |= {"anyOf": [value, {"type": "null"}]} if key in NULLABLE else value
        prop["examples"] = [_example(key, value, default if isinstance(default, (int, float, str)) else None)]
        out[key] = prop
    return out


# ---------------------------------------------------------------- rules of the registry and the modes


def _issues(spec: Mapping[str, object]) -> set[str]:
    from oodida_core.spec.model import validate_spec

    try:
        validate_spec(dict(spec))
    except SpecError as e:
        return {issue.field for issue in e.issues}
    return set()


def _branches(properties: Mapping[str, Schema]) -> list[Schema]:
    """One branch per group of (mode, onboard) pairs that share offboards, keys and limits,
    read off the method registry: the modes each method is allowed in, the off-board methods
    that fit, the parameters each pair takes and requires, and the offboards that allow only
    one iteration. (`properties` is the analytic properties, kept for the signature.)"""
    from oodida_core.spec.model import AssignmentSpec

    default_offboard = AssignmentSpec.model_fields["offboard"].default  # what "not given" means
    keys = list(registry.parameters())
    groups: dict[tuple[Any, ...], list[str]] = {}
    for mode in ANALYTIC_MODES:
        for on in registry.ONBOARD.values():
            if mode not in on.modes:
                continue
            probe = {**LISTING_1_1, "mode": mode, "onboard": on.name}
            least = next(
                n
                for n in range(1, len(SIGNAL_NAMES) + 1)
                if "signals" not in _issues({**probe, "signals": list(SIGNAL_NAMES[:n])})
            )
            rules: dict[tuple[Any, ...], list[str | None]] = {}
            for off in registry.OFFBOARD.values():
                if mode not in off.modes or not off.fits(on):
                    continue
                used = dict.fromkeys((*on.parameters, *off.parameters))
                banned = tuple(k for k in keys if k not in {p.name for p in used})
                needed = tuple(p.name for p in used if p.required)
                offs = rules.setdefault((off.name in on.one_iteration_with, banned, needed), [])
                offs += [off.name, None] if off.name == default_offboard else [off.name]
            for (one, banned, needed), offs in rules.items():
                groups.setdefault((mode, tuple(offs), one, banned, needed, least), []).append(on.name)
    merged: dict[tuple[Any, ...], list[str]] = {}
    for (mode, *rest), onboards in groups.items():
        merged.setdefault((tuple(onboards), *rest), []).append(mode)
    return [_branch(modes, *key) for key, modes in merged.items()]


def _branch(
    modes: list[str],
    onboards: tuple[str, ...],
    offboards: tuple[str | None, ...],
    one_iteration: bool,
    banned: tuple[str, ...],
    needed: tuple[str, ...],
    least_signals: int,
) -> Schema:
    named = [m for m in offboards if m]
    offboard = words(named, METHOD_ALIASES)
    props: Schema = {
        "mode": words(modes),
        "onboard": words(onboards, METHOD_ALIASES),
        "offboard": {"anyOf": [offboard, {"type": "null"}]} if None in offboards else offboard,
        **{k: {"type": "null"} for k in banned},
        **{k: {"not": {"type": "null"}} for k in needed},
    }
    if one_iteration:
        props["iterations"] = {"const": 1}
    if least_signals > 1:
        props["signals"] = {"type": "array", "minItems": least_signals}
    required = [*needed, *([] if None in offboards else ["offboard"])]
    text = f"mode {'/'.join(modes)} with onboard {'/'.join(onboards)}: offboard {'/'.join(named)}"
    text += "".join(
        [
            " (or none)" if None in offboards else "",
            ", iterations 1" if one_iteration else "",
            f", at least {least_signals} signals" if least_signals > 1 else "",
            f", {'/'.join(needed)} required" if needed else "",
        ]
    )
    return {"$comment": text, "properties": props} | ({"required": required} if required else {})


def _deploy_rules() -> list[Schema]:
    """The clients forms each deploy mode accepts (deploy_offboard: only "all")."""
    forms = _clients()["anyOf"]
    rules: list[Schema] = []
    for mode in DEPLOY_MODES:
        spec = {"mode": mode, "filename": _EXAMPLES["filename"]}
        kept = [
            f
            for f, v in zip(forms, ("all", [1], 1, {"tags": {"a": "b"}}), strict=True)
            if "clients" not in _issues({**spec, "clients": v})
        ]
        if len(kept) < len(forms):
            then = {"properties": {"clients": {"anyOf": kept} if kept else False}}
            rules.append({"if": {"properties": {"mode": words([mode])}}, "then": then})
    return rules


# ---------------------------------------------------------------- the whole schema


def _texts(properties: dict[str, Schema]) -> None:
    """A required text (minLength 1) must hold more than blanks, as `spec_fields.text` says."""
    for prop in properties.values():
        if prop.get("type") == "string" and prop.get("minLength", 0) > 0 and "pattern" not in prop:
            prop.update(_not_blank(prop))


@functools.cache
def _build() -> Schema:
    from oodida_core.spec.model import AssignmentSpec, DeploySpec

    analytic = _properties(AssignmentSpec, ANALYTIC_KEYS, _input_forms())
    deploy = _properties(DeploySpec, DEPLOY_KEYS, {**_input_forms(), "mode": words(DEPLOY_MODES)})
    _texts(analytic)
    _texts(deploy)
    only_null = [k for k in NULLABLE if k not in DEPLOY_KEYS]
    return {
        "$schema": DRAFT,
        "title": "OODIDA assignment",
        "description": (
            "An assignment for the fleet, in every form oodida_core.spec.model.validate_spec accepts: "
            "an analytic task (modes measurement, monitoring, federated) or the deployment of a "
            "custom module (deploy_onboard, deploy_offboard). Mode, method, direction and signal "
            "names are case-insensitive and 'mean' means 'average'; one signal name may stand "
            "for a list; integral numbers such as 5.0 count as integers; JSON null for an "
            "optional key means it is not given; unknown keys are refused. " + GAPS
        ),
        "oneOf": [{"$ref": "#/$defs/AssignmentSpec"}, {"$ref": "#/$defs/DeploySpec"}],
        "$defs": {
            "AssignmentSpec": {
                "title": "Assignment",
                "description": "An analytic assignment. anyOf lists the (mode, onboard, offboard) "
                "combinations and the keys each needs or refuses.",
                "type": "object",
                "properties": analytic,
                "required": list(REQUIRED_ANALYTIC),
                "additionalProperties": False,
                "anyOf": _branches(analytic),
            },
            "DeploySpec": {
                "title": "Deployment",
                "description": "A custom module for the clients (deploy_onboard) or for the cloud "
                "(deploy_offboard). The analytic keys that are optional may be given as null.",
                "type": "object",
                "properties": deploy,
                "patternProperties": {"^(?:" + "|".join(only_null) + ")" + _END: {"type": "null"}},
                "required": list(REQUIRED_DEPLOY),
                "additionalProperties": False,
                "allOf": _deploy_rules(),
            },
            "ClientId": _client_id(),
            "Clients": _clients(),
            "TagFilter": _tag_filter(),
            "SignalName": _signal_name(),
            "Signals": _signals(),
            "Filename": _filename(),
        },
    }


def spec_json_schema() -> Schema:
    """The draft 2020-12 JSON Schema of every spec `validate_spec` accepts (see GAPS)."""
    return copy.deepcopy(_build())


__all__ = ["GAPS", "NULLABLE", "spec_json_schema", "words"]
