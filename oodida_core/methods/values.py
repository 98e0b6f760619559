"""Checkers of one value, shared by the spec's fields and the methods' parameters.

Each takes any object and returns the normalised value, or raises `Bad` saying what is wrong
(`WHOLE` stands for the checked value itself). `oodida_core.spec.fields` re-exports them.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping

__all__ = ["WHOLE", "Bad", "bad", "choice", "did_you_mean", "integer", "number"]


class Bad(Exception):
    """A field broke a rule; `problems` pairs each offending value (WHOLE: the field's) with it."""

    def __init__(self, *problems: tuple[object, str]) -> None:
        super().__init__(problems)
        self.problems = problems


WHOLE = object()


def bad(rule: str) -> Bad:
    """The value as a whole broke `rule`."""
    return Bad((WHOLE, rule))


def did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    if len(word) > 100:
        return ""
    near = difflib.get_close_matches(word.lower(), choices, n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def integer(value: object, lo: int, hi: int) -> int:
    rule = f"must be an integer from {lo:,} to {hi:,}"
    if isinstance(value, float) and value.is_integer():  # 5.0 -> 5; NaN and inf are not
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(rule)
    if not lo <= value <= hi:
        raise bad(rule)
    return int(value)


def number(value: object, rule: str) -> float:
    """A finite number (an int or a float, not a bool) as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(rule)
    try:
        out = float(value)
    except OverflowError:
        raise bad(rule) from None
    if not math.isfinite(out):
        raise bad(rule)
    return out


def choice(
    value: object, choices: tuple[str, ...], what: str, aliases: Mapping[str, str] | None = None
) -> str:
    if not isinstance(value, str):
        raise bad(f"must be a string: one of {', '.join(choices)}")
    word = value.lower()
    word = (aliases or {}).get(word, word)
    if word not in choices:
        hint = did_you_mean(word, (*choices, *(aliases or {})))
        raise bad(f"unknown {what}{hint} (one of {', '.join(choices)})")
    return word
