"""Fan-out: from a validated assignment and the live registry to one on-board task per client.

Pure functions; the Celery wiring lives in ``orchestrator.py``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from oodida_core.protocol.errors import SpecError, SpecIssue
from oodida_core.protocol.ids import format_ranges
from oodida_core.protocol.signals import canonical, vss_path
from oodida_core.protocol.tags import TagFilter
from oodida_core.protocol.wire import ClientInfo, OnboardTask
from oodida_core.spec.model import AssignmentSpec, onboard_parameters
from oodida_core.spec.tags import pick, select_tagged


def _ranges(ids: Sequence[int]) -> str:
    return format_ranges(ids).replace(",", ", ") or "none"


def select_clients(spec: AssignmentSpec, live: Sequence[ClientInfo], known: set[int], seed: str) -> list[int]:
    """The client ids an assignment runs on, sorted; SpecError when it cannot run.

    ``all``: every live client. A list: exactly those, each of which must be live.
    ``k``: k live clients picked at random (reproducibly from ``seed``), or all if fewer.
    A tag filter: the live clients whose tags match, or k of them (``oodida_core.spec.tags``).
    """
    live_ids = sorted(c.client_id for c in live)
    if not live_ids:
        raise SpecError([SpecIssue("clients", spec.clients, "no client is live; start some first")])
    wanted = spec.clients
    if wanted == "all":
        return live_ids
    if isinstance(wanted, TagFilter):
        return select_tagged(wanted, live, seed)
    if isinstance(wanted, int):
        return pick(live_ids, wanted, seed)
    chosen = sorted(set(wanted))
    unknown = [c for c in chosen if c not in known and c not in live_ids]
    offline = [c for c in chosen if c in known and c not in live_ids]
    issues = []
    if unknown:
        issues.append(
            SpecIssue(
                "clients", list(wanted), f"unknown client ids {_ranges(unknown)} (live: {_ranges(live_ids)})"
            )
        )
    if offline:
        issues.append(
            SpecIssue(
                "clients",
                list(wanted),
                f"clients {_ranges(offline)} are not live (live: {_ranges(live_ids)})",
            )
        )
    if issues:
        raise SpecError(issues)
    return chosen


def _nearest(signal: str, names: Sequence[str]) -> str:
    """A hint naming the offered signal closest to ``signal``, if one is close."""
    wanted = vss_path(canonical(signal) or signal)
    near = difflib.get_close_matches(wanted, [n for n in names if n != wanted], n=1, cutoff=0.75)
    return f"; did you mean {near[0]!r}?" if near else ""


def check_signals(spec: AssignmentSpec, selected: Sequence[int], live: Sequence[ClientInfo]) -> None:
    """Every selected client must offer every requested signal, named by its short name or its
    VSS path (a vehicle's catalogue may hold signals beyond the built-in ones)."""
    by_id = {c.client_id: c for c in live}
    lacking: dict[str, list[int]] = {}
    anywhere: set[str] = set()
    for cid in selected:
        offered = {canonical(s) or s for s in by_id[cid].signals} if cid in by_id else set()
        anywhere |= offered
        for signal in spec.signals:
            if (canonical(signal) or signal) not in offered:
                lacking.setdefault(signal, []).append(cid)
    if lacking:
        names = sorted({vss_path(s) for s in anywhere})
        raise SpecError(
            [
                SpecIssue(
                    "signals",
                    list(spec.signals),
                    f"{signal!r} is not offered by clients {_ranges(ids)}{_nearest(signal, names)}",
                )
                for signal, ids in lacking.items()
            ]
        )


def check_custom_code(
    spec: AssignmentSpec, onboard_versions: Mapping[int, str | None], offboard_version: str | None
) -> None:
    """An assignment with custom code needs the user's code on every selected client / cloud."""
    issues = []
    if spec.onboard == "custom":
        lacking = [cid for cid, v in onboard_versions.items() if v is None]
        if lacking:
            issues.append(
                SpecIssue(
                    "onboard",
                    "custom",
                    f"you have no on-board code on clients {_ranges(lacking)}: deploy a module there first",
                )
            )
    if spec.offboard == "custom" and offboard_version is None:
        issues.append(SpecIssue("offboard", "custom", "you have no off-board code: deploy a module first"))
    if issues:
        raise SpecError(issues)


def check_min_clients(spec: AssignmentSpec, selected: Sequence[int]) -> None:
    """A quorum (``min_clients``) of at most the clients the assignment runs on; a ``buffer``
    (asynchronous aggregation) as well, only in federated mode and not with a quorum."""
    if spec.min_clients is not None and spec.min_clients > len(selected):
        rule = f"must be at most the number of selected clients ({len(selected)}: {_ranges(selected)})"
        raise SpecError([SpecIssue("min_clients", spec.min_clients, rule)])
    if spec.buffer is None:
        return
    issues = []
    if spec.mode != "federated":
        issues.append(SpecIssue("buffer", spec.buffer, "only allowed in federated mode"))
    if spec.buffer > len(selected):
        rule = f"must be at most the number of selected clients ({len(selected)}: {_ranges(selected)})"
        issues.append(SpecIssue("buffer", spec.buffer, rule))
    if spec.min_clients is not None:
        rule = "not with buffer: an asynchronous aggregation takes every buffer answers"
        issues.append(SpecIssue("min_clients", spec.min_clients, rule))
    if issues:
        raise SpecError(issues)


def onboard_tasks(
    spec: AssignmentSpec,
    assignment_id: str,
    user: str,
    iteration: int,
    clients: Sequence[int],
    model: Any,
    deadline: float,
) -> list[OnboardTask]:
    """One on-board task per client for one iteration, in client order."""
    common: dict[str, Any] = {
        "assignment_id": assignment_id,
        "user": user,
        "iteration": iteration,
        "method": spec.onboard,
        "signals": tuple(spec.signals),
        "samples": spec.samples,
        "frequency": spec.frequency,
        **onboard_parameters(spec),  # threshold, bins, q, proximal_mu...: the on-board method's, those set
        "model": model,
        "federated": spec.mode == "federated",
        "deadline": deadline,
        "quorum": spec.min_clients,
        "buffered": spec.buffer is not None,
    }
    return [OnboardTask(client_id=cid, **common) for cid in clients]
