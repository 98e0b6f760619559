"""Checking what custom code returns: the contract's JSON types, nesting depth and size.

``check_result`` turns a return value into bool, int, finite float, str, lists and dicts with
string keys (numpy scalars and arrays become numbers and lists), or raises CustomCodeError naming
the offending part (``result['a'][3] is a set``). ``encode_result`` is the same value as compact
JSON, which the sandbox process sends back to its parent. Both are re-exported by
``oodida_core.customcode.check``.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from oodida_core.protocol.errors import CustomCodeError

if TYPE_CHECKING:
    from oodida_core.customcode.check import CodePolicy

MiB = 1024 * 1024
MAX_DEPTH = 64
MAX_RESULT_BYTES = 1 * MiB  # CodePolicy's default max_result_bytes
MAX_INT_BITS = 13_000  # Python refuses to print integers over 4,300 digits, so JSON cannot carry them


def check_result(value: object, policy: CodePolicy | None = None) -> object:
    """The value converted to the contract's types; CustomCodeError naming the offending part."""
    return _checked(value, MAX_RESULT_BYTES if policy is None else policy.max_result_bytes)[0]


def encode_result(value: object, policy: CodePolicy | None = None) -> str:
    """``check_result``'s value as compact JSON (what the sandbox sends back)."""
    return _checked(value, MAX_RESULT_BYTES if policy is None else policy.max_result_bytes)[1]


def _checked(value: object, max_bytes: int) -> tuple[object, str]:
    converted = _convert(value, "result", 0)
    text = json.dumps(converted, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise CustomCodeError(
            f"the result is {_size(size)} once serialised to JSON; at most {_size(max_bytes)} is allowed"
        )
    return converted, text


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KiB" if n < MiB else f"{n / MiB:.1f} MiB"


_KINDS = {set: "a set", frozenset: "a frozenset", bytes: "bytes", bytearray: "bytes", complex: "complex"}
_ALLOWED_TYPES = "bool, int, finite float, str, lists and tuples of these, and dicts with string keys"


def _text(v: str, path: str) -> str:
    """A string JSON and Redis can carry: CustomCodeError for a lone surrogate (Python allows
    them, UTF-8 does not)."""
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CustomCodeError(
                f"{path} holds a lone surrogate ({v[exc.start]!r} at position {exc.start}); "
                "strings must be valid Unicode"
            ) from None
    return v


def _convert(v: Any, path: str, depth: int) -> object:
    if depth > MAX_DEPTH:
        raise CustomCodeError(f"{path} is nested more than {MAX_DEPTH} levels deep")
    t = type(v)
    if t is float or (isinstance(v, float) and not isinstance(v, bool)):
        if not math.isfinite(v):
            raise CustomCodeError(f"{path} is {float(v)!r}; only finite numbers are allowed")
        return float(v)
    if t is int and v.bit_length() > MAX_INT_BITS:
        raise CustomCodeError(
            f"{path} is an integer of {v.bit_length():,} bits; at most {MAX_INT_BITS:,} bits "
            "(about 3,900 digits) can be sent as JSON: return a float or a string"
        )
    if t is str:
        return _text(v, path)
    if t is bool or t is int:
        return v
    if isinstance(v, (list, tuple)):
        return [_convert(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(v)]
    if isinstance(v, dict):
        out = {}
        for key, item in v.items():
            if not isinstance(key, str):
                raise CustomCodeError(
                    f"{path} has the key {key!r} ({type(key).__name__}); dictionary keys must be strings"
                )
            out[_text(str(key), f"{path} key {str(key)!r}")] = _convert(
                item, f"{path}[{str(key)!r}]", depth + 1
            )
        return out
    if getattr(t, "__module__", None) == "numpy" and hasattr(v, "dtype"):  # numpy scalars and arrays
        if v.dtype.kind in "OV":
            raise CustomCodeError(f"{path} is a numpy value holding Python objects; return numbers")
        return _convert(v.tolist() if getattr(v, "ndim", 0) else v.item(), path, depth)
    for kind in (bool, int, str):  # subclasses such as IntEnum
        if isinstance(v, kind):
            return _convert(kind(v), path, depth)
    if v is None:
        raise CustomCodeError(f"{path} is None (does custom_code return a value on every path?)")
    what = next((k for c, k in _KINDS.items() if isinstance(v, c)), None)
    what = what or (
        "a class" if isinstance(v, type) else "a function" if callable(v) else f"a {t.__name__} object"
    )
    raise CustomCodeError(f"{path} is {what}; custom code may return {_ALLOWED_TYPES}")
