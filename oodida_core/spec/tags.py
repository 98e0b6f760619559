"""``clients`` as a tag filter: the spec's check of it and the choice of vehicles it makes.

``{"tags": {"powertrain": "ev"}}`` runs on every live vehicle tagged ``powertrain=ev``;
``{"tags": {"region": ["eu", "us"]}, "k": 20}`` on 20 of the live vehicles whose region is eu
or us, picked at random (reproducibly from the assignment's or deployment's id), or all of
them if fewer match. Every key must match (and); the values listed for one key are
alternatives (or). The vocabulary of tags is ``oodida_core.protocol.tags``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

from oodida_core.methods.values import WHOLE, Bad, did_you_mean, integer
from oodida_core.methods.values import bad as _bad
from oodida_core.protocol.errors import SpecError, SpecIssue
from oodida_core.protocol.ids import format_ranges
from oodida_core.protocol.tags import (
    MAX_FILTER_VALUES,
    MAX_TAGS,
    TagFilter,
    describe,
    key_problem,
    value_problem,
)
from oodida_core.protocol.wire import ClientInfo

FILTER_KEYS = ("tags", "k")
MAX_K = 2**63 - 1
FILTER_HELP = (
    '{"tags": {key: value or [values]}} or with "k": N (N of the live vehicles that match, '
    "or all of them if fewer match)"
)


def check_filter(value: Mapping[object, object]) -> TagFilter:
    """A tag filter as a spec gives it (one value or a list per key; "k" optional, null meaning
    not given), in canonical form; Bad listing every problem."""
    problems: list[tuple[object, str]] = []
    for key in value:
        if key not in FILTER_KEYS:
            label = key if isinstance(key, str) else repr(key)
            hint = did_you_mean(label, FILTER_KEYS) if isinstance(key, str) else ""
            problems.append((key, f"unknown key {label[:40]!r} in a tag filter (its keys: tags, k){hint}"))
    if "tags" not in value:  # one problem: the mapping is no tag filter at all
        rule = f"a tag filter needs 'tags': it must be {FILTER_HELP}"
        raise _bad(f"{rule} ({'; '.join(p for _, p in problems)})" if problems else rule)
    wanted: dict[str, tuple[str, ...]] = {}
    tags = value["tags"]
    if not isinstance(tags, Mapping) or not tags:
        problems.append((tags, f"'tags' must map 1 to {MAX_TAGS} tag keys to a value or a list of values"))
    elif len(tags) > MAX_TAGS:
        problems.append((WHOLE, f"'tags' may name at most {MAX_TAGS} keys, not {len(tags)}"))
    else:
        for key, values in tags.items():
            found = _values(key, values)
            if isinstance(found, tuple):
                wanted[str(key)] = found
            else:
                problems.extend(found)
    k: int | None = None
    if value.get("k") is not None:
        try:
            k = integer(value["k"], 1, MAX_K)
        except Bad:
            problems.append((value["k"], f"'k' must be a positive integer (at most {MAX_K:,}) or null"))
    if problems:
        raise Bad(*problems)
    return TagFilter(tags=wanted, k=k)


def _values(key: object, values: object) -> tuple[str, ...] | list[tuple[object, str]]:
    """The values named for ``key``, or the problems with it or them."""
    problem = key_problem(key)
    if problem:
        return [(key, problem)]
    assert isinstance(key, str)
    listed = [values] if isinstance(values, str) else values
    if not isinstance(listed, (list, tuple)) or not 1 <= len(listed) <= MAX_FILTER_VALUES:
        rule = f"tag {key!r} needs a value or a list of 1 to {MAX_FILTER_VALUES} values"
        return [(values, rule)]
    problems = [(v, p) for v in listed if (p := value_problem(key, v))]
    if problems:
        return problems
    repeated = sorted(v for v, n in Counter(listed).items() if n > 1)
    if repeated:
        return [(values, f"the values of tag {key!r} must be distinct; repeated: {', '.join(repeated[:5])}")]
    return tuple(listed)


def check_clients_filter(value: object) -> TagFilter:
    """The ``clients`` checker's part for a mapping (or a TagFilter made before)."""
    if isinstance(value, TagFilter):
        return value
    if not isinstance(value, Mapping):
        raise _bad(f"a tag filter must be {FILTER_HELP}")
    return check_filter(value)


# ---------------------------------------------------------------- choosing vehicles


def matching(wanted: TagFilter, live: Sequence[ClientInfo]) -> list[int]:
    """The ids of the live vehicles whose tags match, sorted."""
    return sorted(c.client_id for c in live if wanted.matches(c.tags))


def live_tags(live: Sequence[ClientInfo], most: int = 8) -> str:
    """The tag values live vehicles carry, per key, with the vehicles that carry each:
    ``powertrain: diesel (4-6), ev (1-3); region: eu (1-6)``."""
    seen: dict[str, dict[str, list[int]]] = {}
    for c in live:
        for key, value in c.tags.items():
            seen.setdefault(key, {}).setdefault(value, []).append(c.client_id)
    if not seen:
        return "no live vehicle has tags"
    parts = []
    for key in sorted(seen)[:most]:
        values = sorted(seen[key].items())
        shown = ", ".join(f"{v} ({format_ranges(ids)})" for v, ids in values[:most])
        more = f" and {len(values) - most} more" if len(values) > most else ""
        parts.append(f"{key}: {shown}{more}")
    if len(seen) > most:
        parts.append(f"and {len(seen) - most} more keys")
    return "live tags: " + "; ".join(parts)


def select_tagged(wanted: TagFilter, live: Sequence[ClientInfo], seed: str) -> list[int]:
    """The vehicles a tag filter chooses among ``live``, sorted: all that match, or ``k`` of
    them picked at random reproducibly from ``seed`` (all if fewer match). SpecError naming
    the filter and the tag values that are live when none matches."""
    found = matching(wanted, live)
    if not found:
        what = f"no live client has the tags {describe(wanted.tags)}"
        if not live:
            what = "no client is live; start some first"
        raise SpecError([SpecIssue("clients", wanted.model_dump(mode="json"), f"{what} ({live_tags(live)})")])
    return pick(found, wanted.k, seed)


def pick(ids: Sequence[int], k: int | None, seed: int | str) -> list[int]:
    """``k`` of the sorted ``ids`` picked at random reproducibly from ``seed``, sorted; all of
    them when ``k`` is None or not fewer than they are. (An int seed and its str pick differently:
    the library's experiments and canaries pass their int seed.)"""
    if k is None or k >= len(ids):
        return list(ids)
    return sorted(random.Random(seed).sample(ids, k))


def filter_of(tags: object) -> TagFilter:
    """``o.clients(tags=...)``: a mapping of tag keys to a value or a list of values, as a
    filter; SpecError (field ``tags``) listing what is wrong."""
    try:
        return check_filter({"tags": tags})
    except Bad as exc:
        raise SpecError(
            [SpecIssue("tags", tags if found is WHOLE else found, rule) for found, rule in exc.problems]
        ) from None
