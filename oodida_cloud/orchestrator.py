"""The cloud's side effects: start assignments, dispatch chords, finish iterations, cancel.

Celery tasks in ``tasks.py`` call into one ``Orchestrator`` through the cloud's one request
path (``requests.py``): its handlers get requests decoded, authenticated and checked for
ownership, and return an ``Outcome``. It is built by the cloud's composition root (``root.py``)
with an explicit Celery app, Redis client, settings and collaborators. Every step is safe to
run twice or concurrently on several cloud workers: the store's scripts decide which caller wins.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import redis
from celery import Celery

from oodida_core.customcode.runner import CodeRunner
from oodida_core.messaging.guard import clean, describe_origin
from oodida_core.messaging.labels import finish_labels
from oodida_core.protocol.errors import CustomCodeError, MessageError, SpecError
from oodida_core.protocol.keys import CLOUD_QUEUE, chord_group_id, header_task_id
from oodida_core.protocol.text import shorten
from oodida_core.protocol.wire import (
    TASK_FINISH_ITERATION,
    TASK_ONBOARD,
    AssignmentRecord,
    CancelRequest,
    IterationResult,
    OnboardResult,
    SubmitRequest,
    decode,
)
from oodida_core.settings import Settings
from oodida_core.spec.model import AssignmentSpec, spec_to_wire, validate_spec
from oodida_core.state.registry import Registry
from oodida_core.state.store import AssignmentStore, Completion, Finish, Redispatch, Start, record_from_hash

from . import ending
from .aggregate import needs_previous
from .answers import stored_answers
from .buffered import VERSIONS, Buffered
from .dispatch import HeaderTask, discard_chord, publish_chord
from .folding import fold_older, kept_iterations
from .gate import Gate
from .iteration import combine, failure_summary
from .limits import AssignmentLimits
from .outcomes import Outcome
from .planning import (
    check_custom_code,
    check_min_clients,
    check_signals,
    onboard_tasks,
    select_clients,
)

log = logging.getLogger("oodida.cloud")


@lru_cache(maxsize=512)
def parse_spec(spec_json: str) -> AssignmentSpec:
    """The stored (already validated) spec of a running assignment, parsed once per worker."""
    spec = validate_spec(json.loads(spec_json))
    assert isinstance(spec, AssignmentSpec)
    return spec


class Orchestrator:
    def __init__(
        self,
        app: Celery,
        client: redis.Redis,
        settings: Settings,
        *,
        store: AssignmentStore,
        registry: Registry,
        code: CodeRunner,
        gate: Gate,
        limits: AssignmentLimits,
    ) -> None:
        self.app = app
        self.redis = client  # the result backend's keys are read straight (``_read_answers``)
        self.settings = settings
        self.store = store
        self.registry = registry
        self.code = code
        self.codestore = code.store
        self.gate = gate
        self.limits = limits
        self.buffered = Buffered(self)  # asynchronous aggregation (the spec's buffer)

    # -- start -------------------------------------------------------------------------------
    def claim(self, request: SubmitRequest) -> str | None:
        """Record a start's assignment as pending unless it exists; whose it is now (requests.py
        refuses the start when it is another user's)."""
        if self.store.create(request.assignment_id, request.user, request.spec):
            return request.user
        return self.store.user(request.assignment_id)

    def start(self, request: SubmitRequest, owner: str | None = None) -> Outcome:
        """Start a decoded, authenticated request whose assignment is its user's (``claim``)."""
        aid, user = request.assignment_id, request.user
        if self.limits.refused_start(request):
            return Outcome.REJECTED  # past a limit of the user's or Redis's maxmemory
        self.gate.ok(request)  # the library follows the assignment's events from here
        try:
            spec = validate_spec(request.spec)
            if not isinstance(spec, AssignmentSpec):
                raise SpecError.single(
                    "mode",
                    spec.mode,
                    "a deployment is not an assignment: send it with deploy_onboard/offboard",
                )
            live = self.registry.live()
            known = self.registry.known() if isinstance(spec.clients, (list, tuple)) else set()
            clients = select_clients(spec, live, known, seed=aid)
            check_signals(spec, clients, live)
            check_min_clients(spec, clients)
            if "custom" in (spec.onboard, spec.offboard):
                check_custom_code(
                    spec,
                    self.codestore.onboard_versions(user, clients) if spec.onboard == "custom" else {},
                    self.codestore.offboard_version(user) if spec.offboard == "custom" else None,
                )
        except SpecError as exc:
            return self._reject(aid, user, request.spec, exc)
        deadline = time.time() + spec.timeout
        outcome = self.store.mark_running(aid, user, clients, spec_to_wire(spec), deadline)
        if outcome is Start.MISSING:  # expired or purged meanwhile: record it again, then start it
            self.store.create(aid, user, request.spec)
            outcome = self.store.mark_running(aid, user, clients, spec_to_wire(spec), deadline)
        if outcome is Start.NOT_OWNER:
            log.warning("assignment %s: start by %r refused, it belongs to another user", aid, user)
            return Outcome.REJECTED
        if outcome is not Start.STARTED:
            return Outcome.DUPLICATE  # a redelivered start: already handled
        log.info("assignment %s of %s: %s on %d clients", aid, user, spec.name, len(clients))
        if spec.buffer is not None:
            self.buffered.start(aid, user, spec, clients, deadline)
        else:
            self.dispatch(aid, user, spec, clients, 0, None, deadline)
        return Outcome.RUNNING

    def _reject(self, aid: str, user: str, raw_spec: dict[str, Any], exc: SpecError) -> Outcome:
        record = self.store.get(aid)
        if record is None:
            self.store.create(aid, user, raw_spec)
        elif record.user != user:
            log.warning("assignment %s: start by %r refused, it belongs to another user", aid, user)
            return Outcome.REJECTED
        elif record.status != "pending":
            return Outcome.DUPLICATE
        log.warning(
            "assignment %s of %s rejected: %s", aid, user, clean("; ".join(map(str, exc.issues)), 600)
        )
        issues = [{"field": i.field, "value": _jsonable(i.value), "rule": i.rule} for i in exc.issues]
        self.store.finish(aid, "failed", str(exc), issues)
        self.limits.ended(user, aid)
        return Outcome.FAILED

    def dispatch(
        self,
        aid: str,
        user: str,
        spec: AssignmentSpec,
        clients: Sequence[int],
        index: int,
        model: Any,
        deadline: float,
    ) -> None:
        """Run one iteration as a chord: a header task per client queue, the callback on cloud."""
        header = [
            HeaderTask(
                TASK_ONBOARD,
                task.to_wire(),
                header_task_id(aid, index, task.client_id),
            )
            for task in onboard_tasks(spec, aid, user, index, clients, model, deadline)
        ]
        argsrepr, kwargsrepr = finish_labels(aid, index, user, clients=len(header))
        callback = self.app.signature(
            TASK_FINISH_ITERATION,
            kwargs={"assignment_id": aid, "iteration": index},
            immutable=True,  # carries no answers: finish_iteration reads each client's result key
            queue=CLOUD_QUEUE,  # in the callback's options, which the edges' guard requires
            argsrepr=argsrepr,
            kwargsrepr=kwargsrepr,
        )
        publish_chord(self.app, chord_group_id(aid, index), header, callback)
        self.store.mark_sent(aid, index)
        self.limits.sent(clients)

    # -- finish an iteration -----------------------------------------------------------------
    def finish_iteration(
        self, answers: list[Any] | None, aid: str, index: int, reason: str = "complete"
    ) -> Outcome:
        """Aggregate iteration ``index`` and move on, once: a late chord callback, a repeated
        deadline or a second cloud worker finds the iteration finished and does nothing."""
        raw = self.store.raw(aid)
        if not raw or "clients" not in raw:
            self.store.drop_deadline(aid, index)
            return Outcome.UNKNOWN
        status, current = raw.get("status"), int(raw.get("current") or 0)
        if VERSIONS in raw:  # asynchronous aggregation: no chord, no iteration waits for all
            return self.buffered.finish(aid, index, reason)
        if index != current or status not in ("running", "cancelled"):
            return Outcome.STALE
        record = record_from_hash(aid, raw)
        spec = parse_spec(raw["spec"])
        clients = list(record.clients)
        # Always each client's own result key, never the answers the chord gathered: a vehicle
        # may write only the results of its own tasks (acl.py), but every chord's join key.
        answers = self._read_answers(aid, index, clients)
        answered = [a["client_id"] for a in answers]  # each speaks for its client
        deadline = ending.iteration_deadline(raw, spec.timeout)
        counted = [a["client_id"] for a in answers if a.get("status") != "skipped"]
        refused = ending.refusal(
            reason, status, clients, counted if reason == "quorum" else answered, deadline, spec.min_clients
        )
        if refused is not None:  # anyone may send finish_iteration: only the cloud decides (ending.py)
            log.warning("assignment %s iteration %d: a %r ending ignored: %s", aid, index, reason, refused)
            return Outcome.REFUSED
        if reason == "deadline" and status == "running" and int(raw.get("sent") or -1) < index:
            return self._redispatch(aid, record.user, spec, clients, index)
        decoded = []
        for a in answers:
            try:
                decoded.append(decode(OnboardResult, a))
            except MessageError as exc:
                log.warning(
                    "assignment %s of %s iteration %d: dropped a malformed answer (%s): %s",
                    aid,
                    record.user,
                    index,
                    describe_origin(a),
                    clean(str(exc), 600),
                )
        now = time.time()
        deployed_at = self.codestore.deployed_at(record.user) if spec.onboard == "custom" else None
        result = combine(
            spec,
            aid,
            index,
            clients,
            decoded,
            float(raw.get("current_started") or now),
            now,
            cancelled=status == "cancelled",
            deployed_at=deployed_at,
            custom_offboard=self._offboard_runner(record.user) if spec.offboard == "custom" else None,
            quorum=reason == "quorum",
            previous_value=self._previous_value(aid, index) if needs_previous(spec.offboard) else None,
        )
        last = bool(spec.iterations) and index + 1 >= spec.iterations
        next_deadline = None if last else now + spec.timeout
        if result.missing or result.late:  # the chord will not complete: close it before anyone is told
            discard_chord(self.app, chord_group_id(aid, index))
        if result.late:  # a client whose task of it has not started skips it (edge quorum.py)
            self.redis.set(
                self.store.keys.iteration_closed(aid, index), "quorum", ex=int(self.app.conf.result_expires)
            )
        outcome = self.store_result(aid, record.user, spec, raw, clients, result, next_deadline)
        if isinstance(outcome, Outcome):
            return outcome
        if result.error:
            log.warning(
                "assignment %s of %s iteration %d: the off-board step (%s, in the cloud) failed: %s",
                aid,
                record.user,
                index,
                spec.offboard if spec.offboard != "custom" else result.offboard_version,
                clean(result.error, 600),
            )
        log.info(
            "assignment %s iteration %d: %d kept, %d discarded, %d missing, %d late, %d failed (%s)",
            aid,
            index,
            len(result.onboard),
            len(result.discarded),
            len(result.missing),
            len(result.late),
            len(result.failed),
            reason,
        )
        if outcome is Completion.ADVANCED and next_deadline is not None:
            self.dispatch(aid, record.user, spec, clients, index + 1, result.value, next_deadline)
        return Outcome.STORED

    def store_result(
        self,
        aid: str,
        user: str,
        spec: AssignmentSpec,
        raw: Mapping[str, str],
        clients: Sequence[int],
        result: IterationResult,
        next_deadline: float | None,
    ) -> Completion | Outcome:
        """Store one finished iteration (a chord's or a buffered aggregation's), once: within
        the assignment's limits (past one, the assignment stops: an ``Outcome``), after folding
        what it pushes out of the latest ``keep``. ``Outcome.STALE`` when someone else stored it."""
        payload = result.to_json()
        refusal = self.limits.over(result.index, raw.get("bytes"), payload)
        if refusal is not None:
            return self.limits.stop(aid, user, result.index, clients, refusal)
        # Fold what this iteration pushes out of the latest ``keep`` before storing it, so
        # that whoever reads after the end event finds at most ``keep`` iterations.
        fold_older(
            self.store, aid, result.index, kept_iterations(spec.keep, self.settings.max_kept_iterations)
        )
        failure = f"every iteration failed; the last: {failure_summary(result)}"
        outcome = self.store.complete_iteration(aid, result, next_deadline, payload, failure)
        if outcome is Completion.ALREADY_STORED:
            return Outcome.STALE
        if outcome in (Completion.DONE, Completion.STORED, Completion.FAILED):
            self.limits.ended(user, aid)
        if outcome is Completion.FAILED:
            log.warning("assignment %s of %s failed: %s", aid, user, clean(failure, 600))
        return outcome

    def _redispatch(
        self, aid: str, user: str, spec: AssignmentSpec, clients: list[int], index: int
    ) -> Outcome:
        """The deadline of an iteration whose chord was never published (a cloud worker died
        between planning it and sending it): publish it now, with a fresh deadline, once."""
        deadline = time.time() + spec.timeout
        claimed = self.store.claim_redispatch(aid, index, deadline)
        if claimed is Redispatch.NOTHING_TO_DO:
            return Outcome.STALE
        if claimed is Redispatch.GAVE_UP:
            log.warning("assignment %s of %s: iteration %d could not be sent; it failed", aid, user, index)
            self.store.finish(aid, "failed", f"iteration {index} could not be sent to the clients")
            self.limits.ended(user, aid)
            return Outcome.FAILED
        previous = self.store.iteration(aid, index - 1) if index > 0 else None
        log.warning("assignment %s of %s: iteration %d was never sent; sending it now", aid, user, index)
        self.dispatch(aid, user, spec, clients, index, previous.value if previous else None, deadline)
        return Outcome.REDISPATCHED

    def _previous_value(self, aid: str, index: int) -> object:
        """The value of iteration ``index - 1`` as this cloud stored it (None at the first):
        the model the clients of ``index`` trained from, for the server optimisers."""
        previous = self.store.iteration(aid, index - 1) if index > 0 else None
        return previous.value if previous is not None else None

    def _offboard_runner(self, user: str) -> Callable[[list[object]], tuple[object, str]]:
        def run(values: list[object]) -> tuple[object, str]:
            version = self.codestore.offboard_version(user)  # the current one, every iteration
            if version is None:
                raise CustomCodeError(f"user {user!r} has no off-board code")
            return self.code.run(version, values), version

        return run

    def _read_answers(self, aid: str, index: int, clients: Sequence[int]) -> list[Any]:
        """The answers to iteration ``index`` that arrived so far (``answers.stored_answers``)."""
        return stored_answers(self.app.backend, self.redis, aid, [(cid, index) for cid in clients])

    # -- deadlines ---------------------------------------------------------------------------
    def fire_due_deadlines(self) -> int:
        """Send a finish task for every iteration whose deadline passed; re-armed until done."""
        due = self.store.claim_due_deadlines(retry_after=max(10.0, 20 * self.settings.deadline_poll))
        for aid, index in due:
            argsrepr, kwargsrepr = finish_labels(aid, index, self.store.user(aid), reason="deadline")
            self.app.send_task(
                TASK_FINISH_ITERATION,
                args=(None,),
                kwargs={"assignment_id": aid, "iteration": index, "reason": "deadline"},
                argsrepr=argsrepr,
                kwargsrepr=kwargsrepr,
                ignore_result=True,
            )
        return len(due)

    # -- cancel ------------------------------------------------------------------------------
    def cancel(self, request: CancelRequest, record: AssignmentRecord) -> Outcome:
        """Cancel the user's assignment ``record`` (requests.py checked it is theirs)."""
        ended = self.store.finish(request.assignment_id, "cancelled", announce=False)
        self.limits.ended(record.user, record.id)
        self.gate.ok(request)
        if ended.outcome is Finish.ALREADY_ENDED:
            return Outcome(record.status)  # it had ended
        try:
            # its clients skip its tasks by its end marker (no worker obeys revoke)
            if ended.iteration is not None:
                self.finish_iteration(None, record.id, ended.iteration, reason="cancel")
        finally:
            self.store.announce_end(record.id)
        log.info("assignment %s cancelled during iteration %s", record.id, ended.iteration)
        return Outcome.CANCELLED


def _jsonable(value: object, depth: int = 0) -> object:
    """An issue's value as stored for the library: JSON, cut short (it is only shown)."""
    if isinstance(value, str):
        return shorten(value, 1000)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length():,} bits>"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= 10:
        return "..."
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value[:100]]
    if isinstance(value, dict):
        return {str(k)[:100]: _jsonable(v, depth + 1) for k, v in list(value.items())[:100]}
    return clean(value, 200)
