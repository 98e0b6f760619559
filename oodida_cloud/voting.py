"""Majority vote over the code versions that the clients of one iteration used.

The off-board step groups an iteration's on-board results by code version ("builtin" or
"sha256:<hex>"), keeps the largest group and reports every other client under `discarded`.
A tie goes to the most recently deployed version (versions without a deploy time, such as
"builtin", count as oldest); if that still ties, to the lexicographically greatest version
string, so the outcome never depends on the order the results arrived in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from oodida_core.protocol.text import short_version


@dataclass(frozen=True)
class Vote:
    """The outcome of a vote: the winning version, the clients kept and why others were not."""

    version: str | None
    kept: tuple[int, ...] = ()
    discarded: dict[int, str] = field(default_factory=dict)


def majority_vote(versions: Mapping[int, str], deployed_at: Mapping[str, float] | None = None) -> Vote:
    """Keep the clients that used the most common code version; discard the rest, with reasons.

    `versions` maps client id -> code version; `deployed_at` maps a version to the time it was
    deployed (any monotonic scale, e.g. Unix seconds) and breaks ties between equal groups.
    """
    if not versions:
        return Vote(None, (), {})
    deployed = deployed_at or {}
    groups: dict[str, list[int]] = {}
    for cid in sorted(versions):
        groups.setdefault(versions[cid], []).append(cid)

    def deploy_time(version: str) -> float:
        t = deployed.get(version)
        return float(t) if t is not None and not math.isnan(t) else -math.inf

    def rank(version: str) -> tuple[int, float, str]:
        return (len(groups[version]), deploy_time(version), version)

    winner = max(groups, key=rank)
    kept = tuple(groups[winner])
    total = len(versions)
    discarded: dict[int, str] = {}
    for version, cids in groups.items():
        if version == winner:
            continue
        if len(cids) < len(kept):
            reason = (
                f"minority code version {short_version(version)} ({len(cids)} of {total} "
                f"clients); kept {short_version(winner)} ({len(kept)} of {total})"
            )
        else:
            why = (
                "it was deployed more recently"
                if deploy_time(winner) > deploy_time(version)
                else "neither was deployed later, so the greater version string wins"
            )
            reason = (
                f"code version {short_version(version)} tied with {short_version(winner)} "
                f"({len(cids)} of {total} clients each); kept {short_version(winner)}: {why}"
            )
        for cid in cids:
            discarded[cid] = reason
    return Vote(winner, kept, dict(sorted(discarded.items())))
