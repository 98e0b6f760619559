"""A submitted assignment as the analyst holds it: follow it, wait for it, cancel it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from oodida_core.protocol.errors import (
    AssignmentTimeout,
    OodidaError,
    QuotaError,
    SpecError,
    SpecIssue,
    UnknownAssignment,
)
from oodida_core.protocol.wire import (
    FINAL_STATUSES,
    TASK_CANCEL,
    AssignmentRecord,
    CancelRequest,
    IterationResult,
)
from oodida_core.state.chords import answered

from ._args import POLL_MS, finite_or_inf, seconds
from .display import assignment_html
from .progress import AssignmentProgress, ProgressBar
from .replies import raise_for
from .results import IterationCounts, Result, iteration_for_user

if TYPE_CHECKING:
    from .client import Oodida

_BAR_POLL_MS = 300  # how often a progress bar reads the current iteration's answers
_STATUS_READ_S = 2.0  # at most this long to read the status after Ctrl-C (Redis may hang)


def interrupted_message(assignment_id: str, status: str | None, *, cancelling: bool = False) -> str:
    """One line after Ctrl-C: whether the assignment still runs and the call that stops it
    (``status`` None: it could not be read; ``cancelling``: its cancel request was sent)."""
    cancel = f'o.assignment("{assignment_id}").cancel()'
    if status in FINAL_STATUSES:
        return f'assignment {assignment_id} has ended ({status}): o.assignment("{assignment_id}").result()'
    if cancelling:
        return (
            f"assignment {assignment_id}: its cancel may not have completed (status "
            f"{status or 'unknown'}): {cancel} tries again"
        )
    if status is None:
        return f"assignment {assignment_id} may still be running (status unreadable): {cancel} stops it"
    state = "queued" if status == "pending" else "running"
    return f"assignment {assignment_id} is still {state} (Ctrl-C stopped only the waiting): {cancel} stops it"


class AssignmentInterrupted(KeyboardInterrupt):
    """Ctrl-C while the library waited for an assignment. The assignment goes on: the message
    (one line) says whether it still runs and the call that cancels it."""

    def __init__(self, assignment_id: str, status: str | None, *, cancelling: bool = False) -> None:
        super().__init__(interrupted_message(assignment_id, status, cancelling=cancelling))
        self.assignment_id = assignment_id
        self.status = status  # None: could not be read
        self.cancelling = cancelling  # interrupted after the cancel request was sent

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES


class _OnInterrupt:
    """Turns Ctrl-C inside a blocking call into AssignmentInterrupted, raised from the
    library's frame (the frames of the interrupted read, deep in redis, are not shown)."""

    def __init__(self, assignment_id: str, read_status: Callable[[], str | None]) -> None:
        self.assignment_id = assignment_id
        self.read_status = read_status  # the status after Ctrl-C; None: could not be read
        self.cancelling = False

    def __enter__(self) -> _OnInterrupt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, KeyboardInterrupt) or isinstance(exc, AssignmentInterrupted):
            return
        status = self.read_status()
        raise AssignmentInterrupted(self.assignment_id, status, cancelling=self.cancelling) from None


class Assignment:
    """A submitted assignment: follow it, wait for it, cancel it."""

    _repr_html_ = assignment_html  # Jupyter: its progress and its result so far

    def __init__(
        self,
        oodida: Oodida,
        assignment_id: str,
        spec: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        self.o = oodida
        self.id = assignment_id
        self._spec = spec
        self._request_id = request_id  # the start request, until the cloud answered it
        self._created = time.time()

    @property
    def spec(self) -> dict[str, Any]:
        """The assignment's spec as the library validated it."""
        if self._spec is None:
            self._spec = dict(self.record().spec)
        return self._spec

    def __repr__(self) -> str:
        return f"<Assignment {self.id} {self.status()}>"

    def record(self) -> AssignmentRecord:
        if self._answered(None) is None:  # still queued: no cloud worker took it yet
            return AssignmentRecord(
                id=self.id, user=self.o.user, status="pending", spec=self.spec, created_at=self._created
            )
        self.o.authenticate()
        record = self.o.store.get(self.id)
        if record is None or record.user != self.o.user:
            raise UnknownAssignment(f"assignment {self.id!r} no longer exists (expired or purged)")
        return record

    def _answered(self, timeout: float | None) -> bool | None:
        """True once the cloud accepted the start request (the record exists from then on),
        None while it did not answer; raises what the cloud refused it with."""
        if self._request_id is None:
            return True
        reply = self.o.requests.await_reply(self._request_id, timeout)
        if reply is None:
            return None
        self._request_id = None
        raise_for(reply)
        return True

    def status(self) -> str:
        return self.record().status

    def _on_interrupt(self) -> _OnInterrupt:
        return _OnInterrupt(self.id, self._status_after_interrupt)

    def _status_after_interrupt(self) -> str | None:
        """The status read on a connection of its own within ``_STATUS_READ_S`` (the
        interrupted one may be mid-reply, Redis may hang); None if it cannot be read. The
        connection's idle sockets are dropped, so the next call starts on clean ones."""
        self.o.redis.connection_pool.disconnect(inuse_connections=False)
        try:
            client = redis.Redis.from_url(
                self.o.settings.read_url or self.o.settings.redis_url,
                socket_timeout=_STATUS_READ_S,
                socket_connect_timeout=_STATUS_READ_S,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            )
            try:
                status, user = client.hmget(self.o.keys.assignment(self.id), ["status", "user"])
            finally:
                client.close()
        except (redis.exceptions.RedisError, OSError, ValueError, KeyboardInterrupt):  # Ctrl-C again
            return None
        if status is None:  # not created yet (still queued), or expired
            return "pending" if self._request_id is not None else None
        return str(status) if user == self.o.user else None

    def counts(self) -> list[IterationCounts]:
        """Per finished iteration: results kept, discarded, missing and failed."""
        return self.result().counts

    def result(self) -> Result:
        """A snapshot: status and every iteration finished so far."""
        pending = self.record()
        if pending.status == "pending" and self._request_id is not None:
            return Result.build(pending, [])
        record, iterations = self.o.store.snapshot(self.id)
        if record is None or record.user != self.o.user:
            raise UnknownAssignment(f"assignment {self.id!r} no longer exists (expired or purged)")
        return Result.build(record, iterations)

    def wait_accepted(self, timeout: float) -> None:
        """Until the cloud accepted the assignment; AuthError when it refused the user,
        SpecError/OodidaError when it refused the assignment."""
        with self._on_interrupt():
            self._wait_accepted(finite_or_inf(timeout))

    def _wait_accepted(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self._answered(timeout) is None:
            raise OodidaError(
                f"no cloud worker took assignment {self.id} within {timeout:.0f}s: is oodida-cloud "
                "running on this broker? The assignment stays queued until one does."
            )
        after = "0"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OodidaError(
                    f"no cloud worker took assignment {self.id} within {timeout:.0f}s: is oodida-cloud "
                    "running on this broker? The assignment stays queued until one does."
                )
            for entry_id, event in self.o.store.read_events(
                self.id, after, max(1, int(min(remaining, 1) * 1000))
            ):
                after = entry_id
                if event.get("type") in ("accepted", "iteration"):
                    return
                if event.get("type") == "end":
                    self._raise_if_rejected()
                    return
            if after == "0" and self.status() != "pending":  # events expired or were missed
                self._raise_if_rejected()
                return

    def _raise_if_rejected(self) -> None:
        record = self.record()
        if record.status != "failed":
            return
        if record.limit:
            raise QuotaError(f"assignment {self.id}: {record.error}", limit=record.limit)
        if record.error_issues:
            raise SpecError(
                [
                    SpecIssue(str(i.get("field")), i.get("value"), str(i.get("rule")))
                    for i in record.error_issues
                ]
            )
        raise OodidaError(f"assignment {self.id} failed: {record.error}")

    def _wait_end_announced(self, timeout: float) -> bool:
        """True once the cloud announced the end (after the last iteration was stored)."""
        deadline = time.monotonic() + timeout
        after = "0"
        while (remaining := deadline - time.monotonic()) > 0:
            for entry_id, event in self.o.store.read_events(
                self.id, after, int(min(remaining, 1) * 1000) + 1
            ):
                after = entry_id
                if event.get("type") == "end":
                    return True
        return False

    def iterations(self, timeout: float | None = None) -> Iterator[IterationResult]:
        """Each iteration as soon as it is finished, in order, until the assignment ends."""
        with self._on_interrupt():
            offboard = str(self.spec.get("offboard", "collect"))
            for index in self._finished_indices(timeout):
                it = self.o.store.iteration(self.id, index)
                if it is not None:
                    yield iteration_for_user(it, offboard)

    def _finished_indices(
        self,
        timeout: float | None,
        poll_ms: int = POLL_MS,
        on_poll: Callable[[], None] | None = None,
    ) -> Iterator[int]:
        """Indices of finished iterations, in order, as the cloud announces them; ``on_poll``
        runs after every read of the event stream (at least every ``poll_ms``)."""
        timeout = seconds(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        after, next_index = "0", 0
        pending: set[int] = set()
        ended = False
        while True:
            if deadline is None:
                block = poll_ms
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssignmentTimeout(f"assignment {self.id} did not finish within {timeout}s")
                block = max(1, int(min(poll_ms, left * 1000)))
            events = self.o.store.read_events(self.id, after, block)
            if on_poll is not None:
                on_poll()
            for entry_id, event in events:
                after = entry_id
                if event.get("type") == "iteration":
                    pending.add(int(event["index"]))
                elif event.get("type") == "end":
                    ended = True
            if not events and not ended and self.status() in FINAL_STATUSES:
                ended = True  # the end was not announced (a cloud worker died): trust the record
                pending.update(i.index for i in self.o.store.iterations(self.id) if i.index >= next_index)
            while next_index in pending:
                pending.discard(next_index)
                yield next_index
                next_index += 1
            if ended:
                yield from sorted(pending)
                return

    def wait(self, timeout: float | None = None, progress: bool = True) -> Result:
        """Until the assignment ends; its Result. A progress bar shows on a terminal or notebook.

        ``timeout`` defaults to iterations x the spec's timeout plus a minute; an assignment
        that runs until cancelled (iterations 0) is waited for without a limit.
        """
        with self._on_interrupt():
            return self._wait(seconds(timeout), progress)

    def _wait(self, timeout: float | None, progress: bool) -> Result:
        spec = self.spec
        total = int(spec.get("iterations") or 0)
        if timeout is None and total:
            timeout = total * float(spec.get("timeout") or 60) + 60
        with ProgressBar(total or None, enabled=progress, desc=str(spec.get("name", self.id))) as bar:
            if not bar.active:
                for _ in self._finished_indices(timeout):
                    pass
                return self._checked(self.result())
            clients = len(self.record().clients)

            def show_answers() -> None:
                nonlocal clients
                clients = clients or len(self.record().clients)
                bar.answered(answered(self.o.app, self.o.redis, self.id, bar.done), clients)

            for index in self._finished_indices(timeout, _BAR_POLL_MS, show_answers):
                it = self.o.store.iteration(self.id, index)
                bar.iteration_done(clients - len(it.missing) - len(it.late) if it else None, clients)
        return self._checked(self.result())

    def _checked(self, result: Result) -> Result:
        """``result``, or QuotaError when a limit stopped the assignment (the message names it
        and its value; ``result()`` still reads the iterations stored before)."""
        if result.status == "failed":
            record = self.record()
            if record.limit:
                raise QuotaError(f"assignment {self.id}: {record.error}", limit=record.limit)
        return result

    def progress(self) -> AssignmentProgress:
        """How far it got: status, iterations done, clients that answered the current one."""
        record = self.record()
        total = int(record.spec.get("iterations") or 0) or None
        count: int | None = 0
        if record.status == "running":
            count = answered(self.o.app, self.o.redis, self.id, record.iterations_done)
        return AssignmentProgress(
            status=record.status,
            iterations_done=record.iterations_done,
            iterations=total,
            clients=len(record.clients),
            answered=count,
        )

    def cancel(self, timeout: float = 30.0) -> Result:
        """Stop after the running iteration at the latest; returns the result as it stands."""
        timeout = finite_or_inf(timeout)
        with self._on_interrupt() as interrupt:
            record = self.record()
            if record.status not in FINAL_STATUSES:
                request = CancelRequest(assignment_id=self.id, **self.o.requests.credentials())
                interrupt.cancelling = True
                self.o.requests.request(TASK_CANCEL, request, "cancel", self.o.accept_timeout)
            if not self._wait_end_announced(timeout) and self.status() not in FINAL_STATUSES:
                raise OodidaError(
                    f"cancel of {self.id} not confirmed within {timeout}s: is oodida-cloud running?"
                )
            return self.result()
