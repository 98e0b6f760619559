"""Fan-in: from the on-board results that arrived to one iteration's result.

Pure and idempotent: the same answers, in any order and with any duplicates, give the same
result, so a redelivered or late answer cannot change what was aggregated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from oodida_core.protocol.errors import CustomCodeError
from oodida_core.protocol.text import shorten
from oodida_core.protocol.wire import IterationResult, OnboardResult
from oodida_core.spec.model import AssignmentSpec, method_parameters

from .aggregate import AggregationError, aggregate
from .voting import majority_vote


def combine(
    spec: AssignmentSpec,
    assignment_id: str,
    index: int,
    clients: Sequence[int],
    answers: Iterable[OnboardResult],
    started_at: float,
    finished_at: float,
    cancelled: bool = False,
    deployed_at: Mapping[str, float] | None = None,
    custom_offboard: Callable[[list[object]], tuple[object, str]] | None = None,
    quorum: bool = False,
    previous_value: object = None,
) -> IterationResult:
    """Deduplicate answers by client, vote over code versions, aggregate what is kept.
    With ``quorum`` (closed by its min_clients) the clients without an answer are ``late``,
    not ``missing``: the iteration did not wait for them (unless it was cancelled)."""
    wanted = set(clients)
    by_client: dict[int, OnboardResult] = {}
    for answer in answers:
        if answer.assignment_id != assignment_id or answer.iteration != index:
            continue
        if answer.client_id not in wanted or answer.status == "skipped":
            continue
        previous = by_client.get(answer.client_id)
        # A redelivered task may answer twice; prefer a success, then the earliest answer.
        if previous is None or _better(answer, previous):
            by_client[answer.client_id] = answer

    failed = {
        cid: a.error or "failed without a message"
        for cid, a in sorted(by_client.items())
        if a.status == "failed"
    }
    ok = {cid: a for cid, a in sorted(by_client.items()) if a.status == "ok"}
    missing = tuple(sorted(wanted - set(by_client)))

    vote = majority_vote({cid: a.version for cid, a in ok.items()}, deployed_at or {})
    kept = {cid: ok[cid].value for cid in vote.kept}
    error: str | None = None
    offboard_version = "builtin"
    try:
        if spec.offboard == "custom":
            if custom_offboard is None:
                raise AggregationError("off-board custom code is not available here")
            # The user's module gets the kept values as a list ordered by client id.
            value, offboard_version = custom_offboard([kept[cid] for cid in sorted(kept)])
        else:
            # previous_value: the cloud's stored value of the previous iteration (server optimisers)
            value = aggregate(spec.offboard, spec.onboard, kept, method_parameters(spec), previous_value)
    except (AggregationError, CustomCodeError) as exc:
        value, error = None, str(exc)

    ended_by: Literal["complete", "deadline", "cancel", "quorum"] = "complete"
    late: tuple[int, ...] = ()
    if missing and quorum and not cancelled:
        ended_by, late, missing = "quorum", missing, ()
    elif missing:
        ended_by = "cancel" if cancelled else "deadline"
    return IterationResult(
        index=index,
        status=iteration_status(bool(kept), len(failed), error),
        value=value,
        onboard=kept,
        versions={cid: a.version for cid, a in ok.items()},
        discarded=dict(vote.discarded),
        missing=missing,
        late=late,
        failed=failed,
        error=error,
        offboard_version=offboard_version,
        ended_by=ended_by,
        started_at=started_at,
        finished_at=finished_at,
    )


def iteration_status(
    anything_kept: bool, failures: int, offboard_error: str | None
) -> Literal["ok", "failed"]:
    """``failed`` when the iteration has no value because code failed: the off-board step
    failed, or nothing was kept and at least one client failed (every client that answered
    failed). An iteration nobody answered is not failed: its clients are ``missing``."""
    if offboard_error is not None or (not anything_kept and failures > 0):
        return "failed"
    return "ok"


def failure_summary(result: IterationResult, limit: int = 300) -> str:
    """One line on why an iteration failed: the off-board error, or the first client's."""
    if result.error:
        text = f"iteration {result.index}: the off-board step failed: {result.error}"
    elif result.failed:
        cid, why = next(iter(sorted(result.failed.items())))
        more = len(result.failed) - 1
        text = f"iteration {result.index}: client {cid} failed: {why}"
        if more:
            text += f" (and {more} more client(s))"
    else:
        text = f"iteration {result.index} failed"
    return shorten(text, limit)


def _better(new: OnboardResult, old: OnboardResult) -> bool:
    if (new.status == "ok") != (old.status == "ok"):
        return new.status == "ok"
    return new.finished_at < old.finished_at
