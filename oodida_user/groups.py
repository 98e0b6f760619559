"""Splitting vehicles into disjoint groups at random: the groups of an experiment's variants.

Pure and reproducible: the same ids, names, fractions and seed give the same groups, whatever
the order the ids came in. ``split_groups`` is shared by experiments and canary deployments.
"""

from __future__ import annotations

import math
import random
import re
import secrets
from collections.abc import Mapping, Sequence

from oodida_core.protocol.errors import SpecError, SpecIssue

MAX_SEED = 2**63 - 1
FRACTION_TOLERANCE = 1e-6
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def draw_seed() -> int:
    """A fresh seed for a split (recorded with the experiment, so the split can be redone)."""
    return secrets.randbelow(2**32)


def check_seed(seed: object) -> int:
    """``seed`` as an int from 0 to 2**63-1; SpecError otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SpecError.single("seed", seed, f"must be an integer from 0 to {MAX_SEED:,}")
    return int(seed)


def group_sizes(n: int, names: Sequence[str], split: Mapping[str, float] | None = None) -> dict[str, int]:
    """How many of ``n`` vehicles each name gets: equal shares by default (they differ by at
    most one, the earlier names getting the extra ones), else the largest-remainder rounding
    of ``split``'s fractions (which must cover exactly ``names``, each above 0, summing to 1).
    SpecError when a group would be empty."""
    fractions = _fractions(names, split)
    quotas = {name: fractions[name] * n for name in names}
    sizes = {name: math.floor(q + 1e-9) for name, q in quotas.items()}
    left = n - sum(sizes.values())
    by_remainder = sorted(names, key=lambda name: (-(quotas[name] - sizes[name]), names.index(name)))
    for name in by_remainder[:left]:
        sizes[name] += 1
    empty = [name for name in names if sizes[name] == 0]
    if empty:
        share = "equal shares" if split is None else f"split {dict(split)}"
        raise SpecError.single(
            "split" if split is not None else "clients",
            n,
            f"{n} vehicle(s) in {share} leave variant(s) {', '.join(empty)} without a vehicle; "
            f"select more vehicles (at least one per variant)",
        )
    return sizes


def split_groups(
    ids: Sequence[int],
    names: Sequence[str],
    split: Mapping[str, float] | None = None,
    seed: int = 0,
) -> dict[str, tuple[int, ...]]:
    """The vehicles ``ids`` split at random into one disjoint group per name, sized by
    ``group_sizes``; each group sorted. The ids are sorted before they are shuffled with
    ``random.Random(seed)``, so the order they come in does not matter."""
    check_seed(seed)
    unique = sorted(set(ids))
    if len(unique) != len(ids):
        repeated = sorted({i for i in ids if list(ids).count(i) > 1})
        raise SpecError.single(
            "clients", list(ids)[:20], f"vehicle ids must be distinct; repeated: {repeated[:10]}"
        )
    check_names(names)
    sizes = group_sizes(len(unique), names, split)
    shuffled = list(unique)
    random.Random(seed).shuffle(shuffled)
    groups: dict[str, tuple[int, ...]] = {}
    start = 0
    for name in names:
        groups[name] = tuple(sorted(shuffled[start : start + sizes[name]]))
        start += sizes[name]
    return groups


def check_names(names: Sequence[str]) -> None:
    """Variant names: at least two, distinct, each a letter or digit then up to 31 letters,
    digits, ``_``, ``.`` or ``-``."""
    if len(names) < 2:
        raise SpecError.single("variants", list(names), "an experiment needs at least 2 variants")
    bad = [n for n in names if not isinstance(n, str) or not _NAME.fullmatch(n)]
    if bad:
        raise SpecError.single(
            "variants",
            bad[0],
            "a variant name is a letter or digit, then up to 31 letters, digits, '_', '.' or '-'",
        )
    if len(set(names)) != len(names):
        raise SpecError.single("variants", list(names), "variant names must be distinct")


def _fractions(names: Sequence[str], split: Mapping[str, float] | None) -> dict[str, float]:
    if split is None:
        return {name: 1 / len(names) for name in names}
    if not isinstance(split, Mapping):
        raise SpecError.single(
            "split", split, "must map each variant to its fraction, e.g. {'A': 0.5, 'B': 0.5}"
        )
    issues: list[SpecIssue] = []
    missing = [n for n in names if n not in split]
    unknown = [k for k in split if k not in names]
    if missing or unknown:
        rule = f"must name exactly the variants ({', '.join(names)})"
        if missing:
            rule += f"; missing: {', '.join(missing)}"
        if unknown:
            rule += f"; not a variant: {', '.join(repr(k)[:40] for k in unknown[:5])}"
        issues.append(SpecIssue("split", dict(split), rule))
    out: dict[str, float] = {}
    for name in names:
        value = split.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not 0 < value <= 1
        ):
            issues.append(SpecIssue(f"split.{name}", value, "must be a fraction above 0 and at most 1"))
        else:
            out[name] = float(value)
    if not issues and abs(sum(out.values()) - 1) > FRACTION_TOLERANCE:
        issues.append(
            SpecIssue(
                "split", dict(split), f"fractions must add up to 1 (they add up to {sum(out.values()):.6g})"
            )
        )
    if issues:
        raise SpecError(issues)
    return out
