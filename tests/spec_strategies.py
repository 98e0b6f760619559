"""Hypothesis strategies for assignment specs, built from the spec's grammar (oodida_core.spec.model).

``valid_specs()`` draws specs the contract accepts, in every form the input may take (any
case, aliases, a single signal for a list, integral floats, nulls for optional keys, the deploy
forms). ``broken_specs()`` takes one of them and breaks one or more fields with values that
rule can never accept (wrong types, out of range, unknown keys, huge strings, NaN and infinity,
nested junk); it returns the spec and the fields an error must name. ``json_values`` is any
JSON, ``odd_values`` adds what Python callers can pass that JSON cannot hold.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from oodida_core.protocol.signals import SIGNAL_NAMES
from oodida_core.spec.model import ALL_KEYS, OFFBOARD_FOR_ONBOARD, ONBOARD_METHODS, key_label

# ---------------------------------------------------------------- the grammar


def _any_case(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.upper(), word.capitalize()])


def _integral(lo: int, hi: int) -> st.SearchStrategy[int | float]:
    """An integer in range, sometimes written as a float (5.0 counts as 5)."""
    ints = st.integers(lo, hi)
    return st.one_of(ints, ints.filter(lambda n: abs(n) < 2**53).map(float))


_client_id = st.integers(1, 2**63 - 1)
_tag_value = st.from_regex(r"\A[A-Za-z0-9_.:/+@-]{1,12}\Z")
_tag_filter = st.fixed_dictionaries(
    {
        "tags": st.dictionaries(
            st.from_regex(r"\A[A-Za-z][A-Za-z0-9_.-]{0,10}\Z"),
            _tag_value | st.lists(_tag_value, min_size=1, max_size=3, unique=True),
            min_size=1,
            max_size=3,
        )
    },
    optional={"k": st.none() | _client_id},
)  # vehicles chosen by tags (oodida_core.spec.tags)
clients = st.one_of(
    _any_case("all"),
    st.lists(_client_id, min_size=1, max_size=8, unique=True),
    _client_id,
    _tag_filter,
)


@st.composite
def _signals(draw: st.DrawFn, at_least: int) -> object:
    names = draw(st.lists(st.sampled_from(SIGNAL_NAMES), min_size=at_least, max_size=6, unique=True))
    cased = [draw(_any_case(n)) for n in names]
    if len(cased) == 1 and draw(st.booleans()):
        return cased[0]  # one name stands for a list
    return cased


_name = st.text(min_size=1, max_size=200).filter(lambda s: s.strip() != "")


@st.composite
def valid_analytic_specs(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(["measurement", "monitoring", "federated"]))
    if mode == "monitoring":
        onboard = draw(st.sampled_from(["threshold", "custom"]))
    elif mode == "federated":
        onboard = draw(st.sampled_from(["train", "custom"]))
    else:
        onboard = draw(st.sampled_from([m for m in ONBOARD_METHODS if m != "train"]))
    fits = [*OFFBOARD_FOR_ONBOARD[onboard], "custom"]
    if mode == "federated":
        fits = [m for m in fits if m in ("fedavg", "collect", "custom")]
    elif onboard != "custom":
        fits = [m for m in fits if m != "fedavg"]
    offboard = draw(st.sampled_from(sorted(set(fits))))
    samples = draw(st.integers(1, 1_000_000))
    iterations = draw(st.integers(0, 1_000_000))
    if mode == "federated" and onboard == "train" and offboard == "collect":
        iterations = 1
    spec: dict[str, Any] = {
        "name": draw(_name),
        "mode": draw(_any_case(mode)),
        "clients": draw(clients),
        "signals": draw(_signals(2 if mode == "federated" else 1)),
        "onboard": draw(_any_case("mean" if onboard == "average" and draw(st.booleans()) else onboard)),
        "frequency": draw(_integral(1, 100)),
        "samples": samples,
        "iterations": iterations,
    }
    if offboard != "collect" or draw(st.booleans()):
        spec["offboard"] = draw(_any_case(offboard))
    optional: dict[str, st.SearchStrategy[Any]] = {
        "description": st.text(max_size=300),
        "timeout": st.floats(min_value=0.001, max_value=86_400) | st.integers(1, 86_400),
    }
    if onboard == "threshold":
        spec["threshold"] = draw(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000))
        optional["direction"] = st.sampled_from(["above", "below"])
    if onboard == "sample":
        optional["sample_size"] = st.integers(1, samples)
    if onboard == "histogram":
        optional["bins"] = _integral(1, 1000)
    for key, values in optional.items():
        choice = draw(st.sampled_from(["absent", "null", "value"]))
        if choice == "null":
            spec[key] = None  # JSON null for an optional key means "not given"
        elif choice == "value":
            spec[key] = draw(values)
    return spec


_filename = st.builds(
    lambda stem, where: f"{where}{stem}.py",
    st.text(
        st.characters(blacklist_categories=["Cc", "Cs"], blacklist_characters="/\\"), min_size=1, max_size=40
    ),
    st.sampled_from(["", "modules/", "/tmp/x/", "C:\\code\\"]),
)


@st.composite
def valid_deploy_specs(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(["deploy_onboard", "deploy_offboard"]))
    spec: dict[str, Any] = {"mode": draw(_any_case(mode)), "filename": draw(_filename)}
    if mode == "deploy_onboard" and draw(st.booleans()):
        spec["clients"] = draw(clients)
    if draw(st.booleans()):
        spec["name"] = draw(st.text(max_size=200))
    if draw(st.booleans()):
        spec["description"] = draw(st.text(max_size=300))
    return spec


def valid_specs() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(valid_analytic_specs(), valid_analytic_specs(), valid_deploy_specs())


# ---------------------------------------------------------------- values no rule accepts

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "all", "speed", "average", "\x00", "x" * 100_000]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)


def _nested(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


class _HostileRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


odd_values = st.one_of(
    st.binary(max_size=20),
    st.sets(st.integers(), max_size=3),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.just(object()),
    st.just(_HostileRepr()),
    st.just(10**5000),
    st.just(_nested(5000)),
    st.just(math.nan),
    st.just(-math.inf),
    st.complex_numbers(allow_nan=True),
)

_huge = st.sampled_from(["x" * 1_000_000, "é" * 200_001])
_not_a_string = st.one_of(
    st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=3), max_size=3), st.just({"a": 1})
)
_junk = st.one_of(st.just({"nested": {"junk": [1, {"x": None}]}}), st.just(_nested(3000)), odd_values)
_not_an_int = st.one_of(
    st.floats().filter(lambda f: not (math.isfinite(f) and f.is_integer())),
    st.text(max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


def _int_out_of(lo: int, hi: int) -> st.SearchStrategy[object]:
    return st.one_of(
        st.integers(max_value=lo - 1), st.integers(min_value=hi + 1), st.just(10**400), _not_an_int
    )


_unknown_method = st.text(max_size=30).filter(
    lambda s: s.lower() not in (*ONBOARD_METHODS, "fedavg", "mean", "collect", "average")
)
_not_a_signal = st.text(max_size=12).filter(lambda s: s.lower() not in SIGNAL_NAMES)

BAD: dict[str, st.SearchStrategy[object]] = {
    "name": st.one_of(
        st.sampled_from(["", "  \t", None]),
        st.builds(lambda s: "n" * 201 + s, st.text(max_size=10)),
        _huge,
        _not_a_string,
    ),
    "description": st.one_of(
        st.builds(lambda s: "d" * 10_001 + s, st.text(max_size=10)), _huge, _not_a_string.filter(bool)
    ),
    "mode": st.one_of(
        st.text(max_size=20).filter(
            lambda s: (
                s.lower()
                not in ("measurement", "monitoring", "federated", "deploy_onboard", "deploy_offboard")
            )
        ),
        _not_a_string,
        st.just(None),
    ),
    "clients": st.one_of(
        st.integers(max_value=0),
        st.just([]),
        st.lists(st.integers(max_value=0), min_size=1, max_size=3),
        st.just([1, 1]),
        st.text(max_size=10).filter(lambda s: s.lower() != "all"),
        st.just(2**63),
        st.sampled_from([1.5, True, math.nan, math.inf, {"a": 1}, [True], [None], None]),
    ),
    "signals": st.one_of(
        st.just([]),
        _not_a_signal,
        st.lists(_not_a_signal, min_size=1, max_size=3),
        st.just(["speed", "SPEED"]),
        st.sampled_from([1, None, [1], {"speed": 1}, ["speed"] * 101]),
    ),
    "onboard": st.one_of(_unknown_method, st.just("fedavg"), st.just(None), st.integers(), _huge),
    "offboard": st.one_of(
        _unknown_method, st.sampled_from(["train", "histogram", "threshold", 3, ""]), _huge
    ),
    "frequency": _int_out_of(1, 100),
    "samples": _int_out_of(1, 1_000_000),
    "iterations": _int_out_of(0, 1_000_000),
    "timeout": st.one_of(
        st.floats(max_value=0.0),
        st.floats(min_value=86_400.0001),
        st.sampled_from([math.nan, math.inf, "60", True, [], 10**400]),
    ),
    "threshold": st.sampled_from([math.nan, math.inf, -math.inf, "high", True, [], 10**400]),
    "direction": st.one_of(
        st.text(max_size=8).filter(lambda s: s.lower() not in ("above", "below")), st.integers()
    ),
    "sample_size": _int_out_of(1, 1_000_000),
    "bins": _int_out_of(1, 1000),
    "filename": st.one_of(
        st.sampled_from(["", ".py", "a.txt", "a\x00b.py", "x" * 5000 + ".py", "dir/.py"]),
        st.integers(),
        st.just(None),
    ),
}
_DEPLOY_BREAKABLE = ("mode", "filename", "name", "description")
_ANALYTIC_BREAKABLE = tuple(k for k in BAD if k != "filename")


@st.composite
def broken_specs(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """A valid spec with one to four fields broken, and the fields the error must name."""
    spec = draw(valid_specs())
    deploy = "filename" in spec
    breakable = _DEPLOY_BREAKABLE if deploy else _ANALYTIC_BREAKABLE
    fields = draw(st.lists(st.sampled_from(breakable), min_size=0, max_size=3, unique=True))
    broken: set[str] = set()
    for field in fields:
        value = draw(BAD[field])
        if deploy and field == "name" and (value is None or (isinstance(value, str) and len(value) <= 200)):
            continue  # a deployment's name is optional and may be empty or blank
        spec[field] = value
        broken.add(field)
    for key in draw(st.lists(st.text(min_size=1, max_size=80), max_size=2)):
        if key not in ALL_KEYS:
            spec[key] = draw(json_values | _junk)
            broken.add(key_label(key))
    not_null = json_values.filter(lambda v: v is not None)  # null would mean "not given"
    if deploy and draw(st.booleans()):
        key = draw(st.sampled_from(["signals", "samples", "onboard", "threshold"]))
        spec[key] = draw(not_null)
        broken.add(key)
    if not deploy and "mode" not in broken and draw(st.booleans()):
        spec["filename"] = draw(not_null)  # (with a broken mode it would make this a deployment)
        broken.add("filename")
    if not broken:  # nothing broken yet: break one field for sure
        field = draw(st.sampled_from(("filename",) if deploy else _ANALYTIC_BREAKABLE))
        value = draw(BAD[field])
        spec[field] = value
        broken.add(field)
    return spec, broken
