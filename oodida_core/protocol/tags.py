"""Vehicle tags: ``key=value`` labels the operator gives a vehicle at start (model, powertrain,
region, anything), carried in its registry entry, and the filter that chooses vehicles by them.

A tag key is a letter then letters, digits, ``_``, ``.`` or ``-`` (at most 64); a value is
letters, digits and ``_ . - : / + @`` (at most 128); a vehicle carries at most 32 tags. Both
are ASCII on purpose: no lookalike or invisible character can pass for another tag, and a tag
prints as it is. Matching is exact (case-sensitive).

The operator's form, for ``oodida-edge --tag`` (repeatable), ``OODIDA_TAGS`` (items separated
by commas or blanks) and ``oodida up --tag``: ``[IDS:]key=value``, where ``IDS`` is one client
id or one range (``7``, ``1-50``) and limits the tag to those clients; without it the tag is
every served client's. Items apply in order, a later one replacing an earlier value of its key
(``OODIDA_TAGS`` comes before the ``--tag`` options).

The filter (``clients: {"tags": {...}, "k": N}`` in a spec): each key names one value or a
list of values; a vehicle matches when it has every key with one of the values named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_TAGS = 32
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 128
MAX_FILTER_VALUES = 32
TAG_KEY_PATTERN = rf"^[A-Za-z][A-Za-z0-9_.-]{{0,{MAX_TAG_KEY - 1}}}$"
TAG_VALUE_PATTERN = rf"^[A-Za-z0-9_.:/+@-]{{1,{MAX_TAG_VALUE}}}$"
KEY_RULE = f"a letter, then letters, digits, '_', '.' or '-' (at most {MAX_TAG_KEY} characters)"
VALUE_RULE = f"letters, digits, '_', '.', '-', ':', '/', '+' or '@' (1 to {MAX_TAG_VALUE} characters)"
ENV_VAR = "OODIDA_TAGS"
OPTION_FORM = "[IDS:]key=value (IDS: a client id or a range such as 1-50)"

_KEY = re.compile(TAG_KEY_PATTERN.replace("$", r"\Z"))
_VALUE = re.compile(TAG_VALUE_PATTERN.replace("$", r"\Z"))
_RANGE = re.compile(r"\A([0-9]{1,18})(?:-([0-9]{1,18}))?\Z")


def _odd(text: str) -> str:
    """Why ``text`` breaks the rule, where a person would not see it: a non-ASCII character (a
    lookalike or an invisible one) or a control character, by code point and position."""
    for i, ch in enumerate(text[:1024]):
        if not ch.isascii() or not ch.isprintable():
            return f" (it holds the character U+{ord(ch):04X} at position {i + 1})"
    return ""


def _shown(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def key_problem(key: object) -> str | None:
    """Why ``key`` is not a tag key, or None."""
    if not isinstance(key, str):
        return f"a tag key must be a string, not {type(key).__name__}"
    if not _KEY.match(key):
        return f"tag key {_shown(key)} must be {KEY_RULE}{_odd(key)}"
    return None


def value_problem(key: str, value: object) -> str | None:
    """Why ``value`` is not a value of tag ``key``, or None."""
    if not isinstance(value, str):
        return f"the value of tag {key[:64]!r} must be a string, not {type(value).__name__}"
    if not _VALUE.match(value):
        return f"the value {_shown(value)} of tag {key[:64]!r} must be {VALUE_RULE}{_odd(value)}"
    return None


def tag_problems(tags: object) -> list[str]:
    """Everything wrong with a vehicle's tags ([] when they are good)."""
    if not isinstance(tags, Mapping):
        return [f"tags must be a mapping of keys to values, not {type(tags).__name__}"]
    if len(tags) > MAX_TAGS:
        return [f"at most {MAX_TAGS} tags, not {len(tags)}"]
    problems: list[str] = []
    for key, value in tags.items():
        problem = key_problem(key) or value_problem(key, value)
        if problem:
            problems.append(problem)
    return problems


TagKey = Annotated[str, Field(min_length=1, max_length=MAX_TAG_KEY, pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, Field(min_length=1, max_length=MAX_TAG_VALUE, pattern=TAG_VALUE_PATTERN)]
VehicleTags = Annotated[dict[TagKey, TagValue], Field(max_length=MAX_TAGS)]
"""A vehicle's tags as its registry entry carries them (refused whole when one is bad)."""


class TagFilter(BaseModel):
    """Vehicles chosen by tags: every key with one of its values; ``k`` of them at random
    (reproducibly from the assignment's or deployment's id), or all when ``k`` is None."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="TagFilter")

    tags: dict[TagKey, Annotated[tuple[TagValue, ...], Field(min_length=1, max_length=MAX_FILTER_VALUES)]] = (
        Field(min_length=1, max_length=MAX_TAGS)
    )
    k: int | None = Field(default=None, ge=1, le=2**63 - 1, strict=True)

    def matches(self, tags: Mapping[str, str]) -> bool:
        return all(tags.get(key) in values for key, values in self.tags.items())

    def __str__(self) -> str:
        return describe(self.tags) + (f" (k={self.k})" if self.k is not None else "")


def describe(wanted: Mapping[str, Sequence[str]]) -> str:
    """A filter as people read it: ``powertrain=ev, region=eu|us``."""
    return ", ".join(f"{key}={'|'.join(values)}" for key, values in wanted.items())


def format_tags(tags: Mapping[str, str]) -> str:
    """A vehicle's tags on one line: ``powertrain=ev,region=eu`` (``-`` for none)."""
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items())) or "-"


# ---------------------------------------------------------------- the operator's form


def parse_item(text: str) -> tuple[tuple[int, int] | None, str, str]:
    """``[IDS:]key=value`` -> ((first, last) or None, key, value); ValueError saying why not."""
    ids: tuple[int, int] | None = None
    head, colon, rest = text.partition(":")
    m = _RANGE.match(head) if colon else None
    if m:
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if first < 1 or last < first:
            raise ValueError(f"tag {text[:80]!r}: client ids are positive and ranges go up (like 1-50)")
        ids, text = (first, last), rest
    key, eq, value = text.partition("=")
    if not eq:
        raise ValueError(f"tag {text[:80]!r} must be {OPTION_FORM}")
    problem = key_problem(key) or value_problem(key, value)
    if problem:
        raise ValueError(problem)
    return ids, key, value


def split_items(text: str) -> list[str]:
    """The items of ``OODIDA_TAGS``: separated by commas or blanks."""
    return [item for item in re.split(r"[,\s]+", text) if item]


def tags_for_clients(
    items: Iterable[str], ids: Sequence[int], strict: bool = True
) -> dict[int, dict[str, str]]:
    """Each served client's tags from the operator's items (applied in order). ValueError
    listing every bad item; with ``strict``, an item whose ids name no served client is one."""
    served = set(ids)
    tags: dict[int, dict[str, str]] = {cid: {} for cid in ids}
    problems: list[str] = []
    for item in items:
        try:
            where, key, value = parse_item(item)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if where is None:
            targets = list(ids)
        else:
            first, last = where
            targets = [cid for cid in ids if first <= cid <= last]
            if not targets and strict and served:
                problems.append(f"tag {item[:80]!r} names clients none of which are served here")
        for cid in targets:
            tags[cid][key] = value
    too_many = sorted(cid for cid, t in tags.items() if len(t) > MAX_TAGS)
    if too_many:
        problems.append(f"client {too_many[0]} has {len(tags[too_many[0]])} tags; at most {MAX_TAGS}")
    if problems:
        raise ValueError("; ".join(problems[:10]))
    return tags
