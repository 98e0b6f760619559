"""The built-in off-board methods: combine the kept on-board values of one iteration.

`aggregate` is pure and returns plain JSON-compatible Python, taking clients in ascending id
order whatever order the mapping was built in. What it cannot combine raises `AggregationError`
saying which clients sent what, and what would work instead.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Any, TypeVar

import numpy as np

from oodida_core.errors import OodidaError

OFFBOARD_BUILTINS: tuple[str, ...] = ("collect", "average", "min", "max", "median", "sum", "fedavg")
_ALIASES: dict[str, str] = {"mean": "average"}

_H = TypeVar("_H", bound=Hashable)
_Item = tuple[int, Any]  # (client id, value)

# Reductions over the client axis (axis 0) of a float64 array.
_FLOAT_OPS: dict[str, Callable[..., Any]] = {
    "average": np.mean,
    "min": np.min,
    "max": np.max,
    "median": np.median,
    "sum": np.sum,
}
# Reductions that stay exact on Python ints (a sum of counts stays an int).
_INT_OPS: dict[str, Callable[[tuple[int, ...]], int]] = {"sum": sum, "min": min, "max": max}


class AggregationError(OodidaError):
    """The kept on-board values cannot be combined by the chosen off-board method."""


def normalise_offboard(offboard: str) -> str:
    """The canonical name of a built-in off-board method; AggregationError if there is none."""
    name = offboard.strip().lower()
    name = _ALIASES.get(name, name)
    if name == "custom":
        raise AggregationError(
            "offboard 'custom' is not a built-in method: it runs the user's deployed off-board "
            "module, not aggregate()"
        )
    if name not in OFFBOARD_BUILTINS:
        raise AggregationError(
            f"unknown off-board method {offboard!r}; the built-in ones are "
            f"{', '.join(OFFBOARD_BUILTINS)} ('mean' is an alias of 'average'), "
            "or 'custom' for a deployed module"
        )
    return name


def aggregate(offboard: str, onboard: str, values: Mapping[int, object]) -> object:
    """Combine the kept on-board values ({client id: value}) with a built-in off-board method."""
    op = normalise_offboard(offboard)
    items: list[_Item] = sorted(values.items(), key=lambda kv: kv[0])
    result: object
    if op == "collect":
        result = dict(items)
    elif not items:
        return None
    elif op == "fedavg":
        result = _fedavg(onboard, items)
    elif onboard == "threshold":
        raise AggregationError(
            f"on-board 'threshold' results are lists of events that differ from client to "
            f"client, so they have no {op}; use offboard 'collect'"
        )
    elif onboard == "train":
        raise AggregationError(
            f"on-board 'train' results are models, not numbers to {op}; "
            "use offboard 'fedavg' to average them, or 'collect'"
        )
    else:
        label = "keys" if onboard == "custom" else "signals"
        result = _combine(op, items, "", onboard == "histogram", label)
    if _has_nonfinite(result):
        bad = [cid for cid, v in items if _has_nonfinite(v)]
        cause = f"{_clients(bad)} sent non-finite values" if bad else "a 64-bit float overflowed"
        raise AggregationError(f"the {op} of the on-board results is not finite: {cause}")
    return result


# ----------------------------------------------------------------------------- average & co.


def _combine(op: str, items: list[_Item], path: str, hist: bool, label: str = "keys") -> object:
    """Combine one value per client, recursing through equal-length lists and same-key dicts."""
    kinds = {cid: _kind(v) for cid, v in items}
    if len(set(kinds.values())) > 1:
        by_kind: dict[str, list[int]] = {}
        for cid, v in items:
            by_kind.setdefault(_describe(v), []).append(cid)
        found = "; ".join(f"{what} from {_clients(cids)}" for what, cids in by_kind.items())
        raise AggregationError(
            f"{_where(path)}the clients sent values of different shapes ({found}); "
            f"{op} needs the same shape from every client, or use offboard 'collect'"
        )
    kind = kinds[items[0][0]]
    if kind == "number":
        return _reduce(op, [[v] for _, v in items])[0]
    if kind == "list":
        return _lists(op, items, path, hist)
    if kind == "dict":
        if hist and all(_is_histogram(v) for _, v in items):
            return _histograms(op, items, path)
        return _dicts(op, items, path, hist, label)
    cid, value = items[0]
    raise AggregationError(
        f"{_where(path)}cannot compute the {op} of {kind} values (client {cid} sent "
        f"{_short(value)}); only numbers, lists of numbers and dicts of these can be combined; "
        "use offboard 'collect' to keep the values as they are"
    )


def _reduce(op: str, rows: list[list[Any]]) -> list[Any]:
    """Reduce equal-length rows of numbers (one row per client) element-wise over clients."""
    if op in _INT_OPS and all(_is_int(x) for row in rows for x in row):
        return [int(_INT_OPS[op](tuple(int(x) for x in col))) for col in zip(*rows, strict=True)]
    try:
        array = np.asarray(rows, dtype=np.float64)
    except OverflowError as exc:
        raise AggregationError(
            f"the {op} of the on-board results is not finite: a number is too large for a 64-bit float"
        ) from exc
    with np.errstate(all="ignore"):
        out = _FLOAT_OPS[op](array, axis=0)
    return [float(x) for x in out.tolist()]


def _lists(op: str, items: list[_Item], path: str, hist: bool) -> list[Any]:
    length, odd = _odd_ones({cid: len(v) for cid, v in items})
    if odd:
        others = ", ".join(f"client {cid} sent {n}" for cid, n in odd.items())
        raise AggregationError(
            f"{_where(path)}{op} combines lists element-wise, so every client must send the "
            f"same number of values: {_most(odd, items)} sent {length}, but {others}"
        )
    if all(_is_number(x) for _, v in items for x in v):
        return _reduce(op, [list(v) for _, v in items])
    return [_combine(op, [(cid, v[i]) for cid, v in items], f"{path}[{i}]", hist) for i in range(length)]


def _dicts(op: str, items: list[_Item], path: str, hist: bool, label: str) -> dict[Any, Any]:
    keys, odd = _odd_ones({cid: frozenset(v) for cid, v in items})
    if odd:
        what = label if not path else "keys"
        parts = []
        for cid, ks in odd.items():
            lacks, extra = sorted(keys - ks, key=str), sorted(ks - keys, key=str)
            detail = ([f"lacks {_names(lacks)}"] if lacks else []) + (
                [f"has extra {_names(extra)}"] if extra else []
            )
            parts.append(f"client {cid} {' and '.join(detail)}")
        raise AggregationError(
            f"{_where(path)}every client must send the same {what} ({_most(odd, items)} sent "
            f"{_names(sorted(keys, key=str))}), but {'; '.join(parts)}"
        )
    first = items[0][1]
    return {k: _combine(op, [(cid, v[k]) for cid, v in items], _join(path, k), hist) for k in first}


def _histograms(op: str, items: list[_Item], path: str) -> dict[str, Any]:
    if op != "sum":
        raise AggregationError(
            f"{_where(path)}histograms have no {op}: use offboard 'sum' to add their counts, "
            "or 'collect' to keep each client's histogram"
        )
    first_cid, first = items[0]
    edges = [float(e) for e in first["edges"]]
    bad = [cid for cid, v in items if [float(e) for e in v["edges"]] != edges]
    if bad:
        raise AggregationError(
            f"{_where(path)}histogram bin edges differ: {_clients(bad)} used other edges than "
            f"client {first_cid}; summing histograms needs the same bins on every client"
        )
    counts = _lists(op, [(cid, v["counts"]) for cid, v in items], _join(path, "counts"), False)
    return {"edges": list(first["edges"]), "counts": counts}


# ---------------------------------------------------------------------------------- fedavg


def _fedavg(onboard: str, items: list[_Item]) -> dict[str, Any]:
    """Average the clients' model weights, each client weighted by its number of samples."""
    used: list[_Item] = []
    for cid, v in items:
        if not isinstance(v, dict) or "weights" not in v or "n_samples" not in v:
            raise AggregationError(
                f"fedavg averages models, but client {cid} sent {_describe(v)}; use onboard "
                "'train', or custom code that returns a dict with 'weights' (a list of numbers) "
                "and 'n_samples' (the number of samples it trained on)"
            )
        n = v["n_samples"]
        if not _is_int(n) or n < 0:
            raise AggregationError(
                f"fedavg: client {cid} reported n_samples {_short(n)}; it must be a non-negative integer"
            )
        if n > 0:
            used.append((cid, v))
    if not used:
        raise AggregationError(
            f"fedavg has nothing to average: every client ({_clients([c for c, _ in items])}) "
            "reported n_samples 0"
        )
    arrays: dict[int, np.ndarray] = {}
    for cid, v in used:
        try:
            array = np.asarray(v["weights"])
        except (ValueError, TypeError):
            array = np.asarray(None)
        if not isinstance(v["weights"], (list, tuple)) or array.dtype.kind not in "iuf":
            raise AggregationError(
                f"fedavg: client {cid}'s 'weights' must be a list of numbers, got {_short(v['weights'])}"
            )
        arrays[cid] = array.astype(np.float64)
    _agree("number of weights", {c: a.shape[0] if a.ndim == 1 else a.shape for c, a in arrays.items()})
    n = np.asarray([v["n_samples"] for _, v in used], dtype=np.float64)
    total = int(sum(int(v["n_samples"]) for _, v in used))
    with np.errstate(all="ignore"):
        weights = np.tensordot(n, np.stack(list(arrays.values())), axes=1) / n.sum()
    result: dict[str, Any]
    if onboard == "train":
        feats = _agree("features", {cid: tuple(v.get("features", ())) for cid, v in used})
        target = _agree("target", {cid: v.get("target") for cid, v in used})
        result = {"features": list(feats), "target": target}
    else:
        result = dict(used[0][1])
    result.update(weights=weights.tolist(), n_samples=total)
    losses = [v.get("loss") for _, v in used]
    if all(_kind(x) == "number" for x in losses):
        with np.errstate(all="ignore"):
            result["loss"] = float(np.dot(n, np.asarray(losses, dtype=np.float64)) / n.sum())
    elif onboard == "train":
        raise AggregationError("fedavg: every 'train' result must report its loss as a number")
    result["clients"] = len(used)
    return result


def _agree(what: str, found: dict[int, _H]) -> _H:
    common, odd = _odd_ones(found)
    if odd:
        others = ", ".join(f"client {cid} has {_short(x)}" for cid, x in odd.items())
        raise AggregationError(
            f"fedavg needs the same {what} on every client: {_most(odd, found)} have "
            f"{_short(common)}, but {others}"
        )
    return common


# --------------------------------------------------------------------------------- helpers


def _odd_ones(found: dict[int, _H]) -> tuple[_H, dict[int, _H]]:
    """The most common value (a tie goes to the lowest client's) and the clients that differ."""
    common = Counter(found[cid] for cid in sorted(found)).most_common(1)[0][0]
    return common, {cid: x for cid, x in sorted(found.items()) if x != common}


def _most(odd: Mapping[int, object], every: Collection[object]) -> str:
    return f"{len(every) - len(odd)} of {len(every)} clients"


def _is_number(x: object) -> bool:
    t = type(x)
    return t is float or t is int or _kind(x) == "number"


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _kind(x: object) -> str:
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


def _describe(x: object) -> str:
    if isinstance(x, (list, tuple)):
        return f"a list of {len(x)}"
    if isinstance(x, dict):
        return f"a dict with keys {_names(sorted(x, key=str))}"
    return "null" if x is None else f"a {_kind(x)}"


def _is_histogram(x: object) -> bool:
    return isinstance(x, dict) and set(x) == {"edges", "counts"}


def _has_nonfinite(x: object) -> bool:
    if isinstance(x, (float, np.floating)):
        return not math.isfinite(x)
    if isinstance(x, dict):
        return any(_has_nonfinite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        if all(type(v) is float for v in x):  # the common case, made fast
            return not all(map(math.isfinite, x))
        return any(_has_nonfinite(v) for v in x)
    return False


def _clients(cids: list[int]) -> str:
    return ("client " if len(cids) == 1 else "clients ") + ", ".join(map(str, cids))


def _names(keys: list[Any]) -> str:
    return ", ".join(repr(k) for k in keys) or "nothing"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _where(path: str) -> str:
    return f"at {path!r}: " if path else ""


def _short(x: object) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."
