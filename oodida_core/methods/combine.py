"""How the off-board reductions combine one value per client, element-wise over clients.

A `Reducer` says how to reduce numbers over the client axis; `reduce_values` walks the values
(numbers, equal-length lists, dicts with the same keys, histograms) and reduces each position.
What cannot be combined raises `AggregationError` saying which clients sent what.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from oodida_core.methods.base import ANY, HISTOGRAM, AggregationError, Item, OnboardMethod
from oodida_core.protocol.text import shorten

if TYPE_CHECKING:
    from oodida_core.methods.base import FloatArray

__all__ = [
    "Reducer",
    "clients",
    "describe",
    "is_int",
    "kind",
    "most",
    "names",
    "odd_ones",
    "reduce_values",
    "short",
]

_H = TypeVar("_H", bound=Hashable)


@dataclass(frozen=True)
class Reducer:
    """A reduction over the client axis: `floats` over axis 0 of a float64 array; `ints` keeps
    Python ints exact (a sum of counts stays an int); `histograms` adds histograms bin by bin."""

    name: str
    floats: Callable[[FloatArray], FloatArray]
    ints: Callable[[tuple[int, ...]], int] | None = None
    histograms: bool = False


def reduce_values(op: Reducer, items: list[Item], onboard: OnboardMethod | None) -> object:
    """Combine one value per client (in client order); None when there is none."""
    if not items:
        return None
    if onboard is not None and onboard.no_reduction:
        raise AggregationError(onboard.no_reduction.format(op=op.name))
    label = "keys" if onboard is not None and onboard.output == ANY else "signals"
    hist = onboard is not None and onboard.output == HISTOGRAM
    return _combine(op, items, "", hist, label)


def _combine(op: Reducer, items: list[Item], path: str, hist: bool, label: str = "keys") -> object:
    """Combine one value per client, recursing through equal-length lists and same-key dicts."""
    kinds = {cid: kind(v) for cid, v in items}
    if len(set(kinds.values())) > 1:
        by_kind: dict[str, list[int]] = {}
        for cid, v in items:
            by_kind.setdefault(describe(v), []).append(cid)
        found = "; ".join(f"{what} from {clients(cids)}" for what, cids in by_kind.items())
        raise AggregationError(
            f"{_where(path)}the clients sent values of different shapes ({found}); "
            f"{op.name} needs the same shape from every client, or use offboard 'collect'"
        )
    found_kind = kinds[items[0][0]]
    if found_kind == "number":
        return _reduce(op, [[v] for _, v in items])[0]
    if found_kind == "list":
        return _lists(op, items, path, hist)
    if found_kind == "dict":
        if hist and all(_is_histogram(v) for _, v in items):
            return _histograms(op, items, path)
        return _dicts(op, items, path, hist, label)
    cid, value = items[0]
    raise AggregationError(
        f"{_where(path)}cannot compute the {op.name} of {found_kind} values (client {cid} sent "
        f"{short(value)}); only numbers, lists of numbers and dicts of these can be combined; "
        "use offboard 'collect' to keep the values as they are"
    )


def _reduce(op: Reducer, rows: list[list[Any]]) -> list[Any]:
    """Reduce equal-length rows of numbers (one row per client) element-wise over clients."""
    import numpy as np

    if op.ints is not None and all(is_int(x) for row in rows for x in row):
        return [int(op.ints(tuple(int(x) for x in col))) for col in zip(*rows, strict=True)]
    try:
        array = np.asarray(rows, dtype=np.float64)
    except OverflowError as exc:
        raise AggregationError(
            f"the {op.name} of the on-board results is not finite: a number is too large for a 64-bit float"
        ) from exc
    with np.errstate(all="ignore"):
        out = op.floats(array)
    return [float(x) for x in out.tolist()]


def _lists(op: Reducer, items: list[Item], path: str, hist: bool) -> list[Any]:
    length, odd = odd_ones({cid: len(v) for cid, v in items})
    if odd:
        others = ", ".join(f"client {cid} sent {n}" for cid, n in odd.items())
        raise AggregationError(
            f"{_where(path)}{op.name} combines lists element-wise, so every client must send the "
            f"same number of values: {most(odd, items)} sent {length}, but {others}"
        )
    if all(_is_number(x) for _, v in items for x in v):
        return _reduce(op, [list(v) for _, v in items])
    return [_combine(op, [(cid, v[i]) for cid, v in items], f"{path}[{i}]", hist) for i in range(length)]


def _dicts(op: Reducer, items: list[Item], path: str, hist: bool, label: str) -> dict[Any, Any]:
    keys, odd = odd_ones({cid: frozenset(v) for cid, v in items})
    if odd:
        what = label if not path else "keys"
        parts = []
        for cid, ks in odd.items():
            lacks, extra = sorted(keys - ks, key=str), sorted(ks - keys, key=str)
            detail = ([f"lacks {names(lacks)}"] if lacks else []) + (
                [f"has extra {names(extra)}"] if extra else []
            )
            parts.append(f"client {cid} {' and '.join(detail)}")
        raise AggregationError(
            f"{_where(path)}every client must send the same {what} ({most(odd, items)} sent "
            f"{names(sorted(keys, key=str))}), but {'; '.join(parts)}"
        )
    first = items[0][1]
    return {k: _combine(op, [(cid, v[k]) for cid, v in items], _join(path, k), hist) for k in first}


def _histograms(op: Reducer, items: list[Item], path: str) -> dict[str, Any]:
    if not op.histograms:
        raise AggregationError(
            f"{_where(path)}histograms have no {op.name}: use offboard 'sum' to add their counts, "
            "or 'collect' to keep each client's histogram"
        )
    first_cid, first = items[0]
    edges = [float(e) for e in first["edges"]]
    bad = [cid for cid, v in items if [float(e) for e in v["edges"]] != edges]
    if bad:
        raise AggregationError(
            f"{_where(path)}histogram bin edges differ: {clients(bad)} used other edges than "
            f"client {first_cid}; summing histograms needs the same bins on every client"
        )
    counts = _lists(op, [(cid, v["counts"]) for cid, v in items], _join(path, "counts"), False)
    return {"edges": list(first["edges"]), "counts": counts}


# --------------------------------------------------------------------------------- helpers


def odd_ones(found: dict[int, _H]) -> tuple[_H, dict[int, _H]]:
    """The most common value (a tie goes to the lowest client's) and the clients that differ."""
    common = Counter(found[cid] for cid in sorted(found)).most_common(1)[0][0]
    return common, {cid: x for cid, x in sorted(found.items()) if x != common}


def most(odd: Mapping[int, object], every: Collection[object]) -> str:
    return f"{len(every) - len(odd)} of {len(every)} clients"


def _is_number(x: object) -> bool:
    t = type(x)
    return t is float or t is int or kind(x) == "number"


def is_int(x: object) -> bool:
    if type(x) is int or type(x) is float:  # the common cases, without looking at numpy's types
        return type(x) is int
    import numpy as np

    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


_PLAIN = {float: "number", int: "number", list: "list", dict: "dict", str: "string", type(None): "null"}


def kind(x: object) -> str:
    plain = _PLAIN.get(type(x))  # JSON's own types, without looking at numpy's
    if plain is not None:
        return plain
    import numpy as np

    if isinstance(x, (bool, np.bool_)):
        return "boolean"
    if isinstance(x, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(x, (list, tuple)):
        return "list"
    if isinstance(x, dict):
        return "dict"
    if isinstance(x, str):
        return "string"
    return "null" if x is None else type(x).__name__


def describe(x: object) -> str:
    if isinstance(x, (list, tuple)):
        return f"a list of {len(x)}"
    if isinstance(x, dict):
        return f"a dict with keys {names(sorted(x, key=str))}"
    return "null" if x is None else f"a {kind(x)}"


def _is_histogram(x: object) -> bool:
    return isinstance(x, dict) and set(x) == {"edges", "counts"}


def clients(cids: list[int]) -> str:
    return ("client " if len(cids) == 1 else "clients ") + ", ".join(map(str, cids))


def names(keys: list[Any]) -> str:
    return ", ".join(repr(k) for k in keys) or "nothing"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _where(path: str) -> str:
    return f"at {path!r}: " if path else ""


def short(x: object) -> str:
    return shorten(repr(x), 60)
