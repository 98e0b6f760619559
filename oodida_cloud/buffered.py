"""Asynchronous federated aggregation (the spec's ``buffer``, after FedBuff).

No iteration waits for every client. Each selected client trains on the model version it was
sent; every time ``buffer`` answers are waiting, the cloud aggregates them (the spec's
off-board method over those answers, like any iteration) into the next model version, stores
that as one iteration, and sends the new model only to the clients whose answers it took.
The others go on training on the version they had; when their answers are taken in a later
aggregation, the iteration's ``staleness`` says how many versions old their model was.

- Iteration ``i`` of such an assignment is the ``i``-th aggregation; ``iterations`` counts them.
- A client's task for version ``v`` answers under its own result key ``<id>-i<v>-c<client>``
  (a client gets at most one task per version), with no chord: after storing its answer the
  client sends ``finish_iteration`` with reason ``buffer`` (``oodida_edge/quorum.py``). The
  cloud believes none of it: it reads the result keys of the versions each client was sent
  (``VERSIONS`` in the assignment's record) and aggregates only when ``buffer`` are there.
- At the aggregation's ``timeout`` (no ``buffer`` answers meanwhile) the answers that are
  there are aggregated (none: the model stays) and the clients without an answer are
  ``missing``; a client whose task ran out of time is sent the new model too.
- One cloud worker aggregates an assignment at a time (``Keys.aggregation_lock``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oodida_core.messaging.guard import clean
from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.keys import header_task_id
from oodida_core.protocol.wire import TASK_ONBOARD, OnboardResult, decode
from oodida_core.spec.model import AssignmentSpec
from oodida_core.state.store import Completion

from . import ending
from .aggregate import needs_previous
from .answers import stored_answers
from .iteration import combine
from .outcomes import Outcome
from .planning import onboard_tasks

if TYPE_CHECKING:
    from .orchestrator import Orchestrator

log = logging.getLogger("oodida.cloud")

VERSIONS = "buffer_versions"  # the record's field: {client: [model version it trains on, sent at]}
LOCK_SECONDS = 30


def pick(answered: Collection[int], buffer: int, closing: bool) -> list[int] | None:
    """The clients whose answers to aggregate now: every one waiting once ``buffer`` are, or
    whatever is there when the aggregation closes (deadline, cancel); None: not yet."""
    if len(answered) >= buffer or closing:
        return sorted(answered)
    return None


def staleness(versions: Mapping[int, int], taken: Sequence[int], current: int) -> dict[int, int]:
    """How many model versions old each taken client's model was at aggregation ``current``."""
    return {cid: current - versions[cid] for cid in taken}


def resend(
    sent: Mapping[int, tuple[int, float]], taken: Collection[int], timeout: float, now: float, closing: bool
) -> list[int]:
    """Who gets the next model: the clients taken, and at a deadline those whose task ran out
    of time without an answer (their task answers ``skipped``)."""
    out = set(taken)
    if closing:
        out |= {cid for cid, (_, at) in sent.items() if at + timeout < now}
    return sorted(out)


def read_versions(raw: Mapping[str, str]) -> dict[int, tuple[int, float]]:
    data = json.loads(raw.get(VERSIONS) or "{}")
    return {int(cid): (int(v), float(at)) for cid, (v, at) in data.items()}


class Buffered:
    """The asynchronous aggregation of one cloud worker, on its orchestrator's collaborators."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.o = orchestrator

    def start(
        self, aid: str, user: str, spec: AssignmentSpec, clients: Sequence[int], deadline: float
    ) -> None:
        """Version 0 (no model) to every selected client."""
        self._send(aid, user, spec, clients, 0, None, deadline, {})

    def _send(
        self,
        aid: str,
        user: str,
        spec: AssignmentSpec,
        clients: Sequence[int],
        version: int,
        model: Any,
        deadline: float,
        sent: dict[int, tuple[int, float]],
    ) -> None:
        """Record, then send, version ``version`` of the model to ``clients`` (no chord)."""
        now = time.time()
        sent = {**sent, **{cid: (version, now) for cid in clients}}
        self.o.redis.hset(
            self.o.store.keys.assignment(aid), VERSIONS, json.dumps({c: list(v) for c, v in sent.items()})
        )
        app = self.o.app
        with app.producer_or_acquire() as producer, producer.batch(max_size=1000):
            for task in onboard_tasks(spec, aid, user, version, clients, model, deadline):
                app.send_task(
                    TASK_ONBOARD,
                    args=(task.to_wire(),),
                    task_id=header_task_id(aid, version, task.client_id),
                    producer=producer,
                    add_to_parent=False,
                )
        self.o.store.mark_sent(aid, version)
        self.o.limits.sent(clients)

    def finish(self, aid: str, index: int, reason: str) -> Outcome:
        """Aggregate what is waiting if ``reason`` allows it now; once per call at most, again
        while ``buffer`` answers are still waiting (a burst of answers)."""
        lock = self.o.redis.lock(
            self.o.store.keys.aggregation_lock(aid), timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS
        )
        if not lock.acquire():
            log.warning("assignment %s: aggregation lock not taken in %d s; retried later", aid, LOCK_SECONDS)
            return Outcome.REFUSED
        try:
            outcome = self._aggregate(aid, index, reason)
            while outcome is Outcome.STORED and reason == "buffer":
                again = self._aggregate(aid, index, reason)
                if again is not Outcome.STORED:
                    break
            return outcome
        finally:
            try:
                lock.release()
            except Exception:  # expired meanwhile: nothing to release
                log.warning("assignment %s: the aggregation lock had expired", aid)

    def _aggregate(self, aid: str, index: int, reason: str) -> Outcome:
        o = self.o
        raw = o.store.raw(aid)
        status, current = raw.get("status"), int(raw.get("current") or 0)
        if status not in ("running", "cancelled"):
            return Outcome.STALE
        if reason in ("deadline", "cancel") and index != current:
            return Outcome.STALE
        if reason not in ("buffer", "deadline", "cancel"):
            return Outcome.REFUSED  # "complete" (no chord here) or "quorum": not this assignment's
        from .orchestrator import parse_spec  # the orchestrator imports this module

        spec = parse_spec(raw["spec"])
        assert spec.buffer is not None
        user = raw.get("user", "")
        clients = json.loads(raw.get("clients") or "[]")
        sent = read_versions(raw)
        versions = {cid: v for cid, (v, _) in sent.items()}
        answers = self._read(aid, versions)
        answered = [a.client_id for a in answers if a.status != "skipped"]
        closing = status == "cancelled"
        if reason in ("deadline", "cancel") and not closing:  # believed only as ending.py says
            deadline = ending.iteration_deadline(raw, spec.timeout)
            refused = ending.refusal(reason, status, (), (), deadline)
            if refused is not None:
                text = "assignment %s iteration %d: a %r ending ignored: %s"
                log.warning(text, aid, index, reason, refused)
                return Outcome.REFUSED
            closing = True
        taken = pick(answered, spec.buffer, closing)
        if taken is None:
            log.debug("assignment %s: %d of buffer %d answers waiting", aid, len(answered), spec.buffer)
            return Outcome.REFUSED
        now = time.time()
        kept = [a.model_copy(update={"iteration": current}) for a in answers if a.client_id in taken]
        result = combine(
            spec,
            aid,
            current,
            clients if closing else taken,
            kept,
            float(raw.get("current_started") or now),
            now,
            cancelled=status == "cancelled",
            deployed_at=o.codestore.deployed_at(user) if spec.onboard == "custom" else None,
            custom_offboard=o._offboard_runner(user) if spec.offboard == "custom" else None,
            previous_value=self._model(aid, current) if needs_previous(spec.offboard) else None,
        )
        ended_by = result.ended_by if closing else "buffer"
        if closing and not result.missing:
            ended_by = "cancel" if status == "cancelled" else "deadline"
        stale = staleness(versions, taken, current)
        result = result.model_copy(update={"staleness": stale, "ended_by": ended_by})
        last = bool(spec.iterations) and current + 1 >= spec.iterations
        next_deadline = None if last else now + spec.timeout
        outcome = o.store_result(aid, user, spec, raw, clients, result, next_deadline)
        if isinstance(outcome, Outcome):
            return outcome
        log.info(
            "assignment %s aggregation %d: %d kept (staleness %s), %d missing, %d failed (%s)",
            aid,
            current,
            len(result.onboard),
            sorted(set(result.staleness.values())),
            len(result.missing),
            len(result.failed),
            reason,
        )
        if outcome is Completion.ADVANCED and next_deadline is not None:
            value = result.value if result.onboard else self._model(aid, current)
            targets = resend(sent, taken, spec.timeout, now, closing)
            self._send(aid, user, spec, targets, current + 1, value, now + spec.timeout, sent)
        return Outcome.STORED

    def _model(self, aid: str, current: int) -> Any:
        """The latest model: the value of the last iteration before ``current`` that
        aggregated any answer (what a server optimiser continues from)."""
        for index in range(current - 1, -1, -1):
            it = self.o.store.iteration(aid, index)
            if it is None or it.onboard:
                return it.value if it is not None else None
        return None

    def _read(self, aid: str, versions: Mapping[int, int]) -> list[OnboardResult]:
        """Each client's answer to the version it was sent, read from its own result key, if
        it speaks for that client and version."""
        out: list[OnboardResult] = []
        for answer in stored_answers(self.o.app.backend, self.o.redis, aid, sorted(versions.items())):
            try:
                out.append(decode(OnboardResult, answer))
            except MessageError as exc:
                why = clean(str(exc), 300)
                cid = answer["client_id"]
                log.warning("assignment %s: dropped a malformed answer of client %d: %s", aid, cid, why)
        return out
