"""One on-board task, start to finish: read the sensors, compute, answer. Never raises.

A header task that raised would fail the whole chord, so every error (a bad message, a
failing method) becomes a ``failed`` answer that names it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

import redis

from oodida_core.customcode.runner import CodeRunner
from oodida_core.customcode.sandbox import CustomCodeFailure
from oodida_core.messaging.guard import clean, log_rejected
from oodida_core.protocol.errors import CustomCodeError, MessageError
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.signals import canonical
from oodida_core.protocol.wire import FINAL_STATUSES, OnboardResult, OnboardTask, decode

from .onboard import OnboardParams, run_builtin
from .sources.base import Source
from .sources.live import Stopped

# (user, client id, version): the version a custom task's client had when the pool took it
PINNED: ContextVar[tuple[str, int, str | None] | None] = ContextVar("oodida_pinned_version", default=None)

log = logging.getLogger("oodida.edge")

DELAY_ENV = "OODIDA_EDGE_DELAY"
MAX_DELAY = 3600.0


def edge_delay(environ: Mapping[str, str] = os.environ) -> float:
    """``$OODIDA_EDGE_DELAY``: seconds every on-board task of this edge waits before it reads,
    as a slow vehicle would (a test and benchmark aid, default 0); ValueError when it is bad."""
    raw = environ.get(DELAY_ENV, "").strip()
    try:
        delay = float(raw) if raw else 0.0
    except ValueError:
        delay = math.nan
    if not 0 <= delay <= MAX_DELAY:
        raise ValueError(f"${DELAY_ENV} must be a number of seconds from 0 to {MAX_DELAY:g}, not {raw!r}")
    return delay


class OnboardRunner:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        sensors: Source,
        code: CodeRunner,
        realtime: bool = False,
    ) -> None:
        self.redis = client
        self.keys = keys
        self.sensors = sensors
        self.code = code
        self.codestore = code.store
        self.realtime = realtime
        self.delay = edge_delay()  # a slow vehicle: a test and benchmark aid
        # whether an iteration's chord was closed (quorum.py; set with the edge's tasks)
        self.closed: Callable[[str, int], bool] | None = None

    def run(self, message: object, task_id: str | None = None) -> dict[str, Any]:
        started = time.time()
        try:
            task = decode(OnboardTask, message)
        except MessageError as exc:
            log_rejected(log, "an on-board", message, exc, task_id)
            return answer_for_bad_message(message, str(exc), started)
        try:
            if started > task.deadline:  # the iteration is over: a redelivered or stale task
                return self._answer(task, "skipped", started, error="the iteration's deadline passed")
            if task.quorum is not None and self.closed and self.closed(task.assignment_id, task.iteration):
                return self._answer(task, "skipped", started, error="the iteration closed at its quorum")
            if task.method == "custom" and self._no_longer_wanted(task):  # it waited for its lane
                return self._answer(task, "skipped", started, error="the assignment ended before its turn")
            if self.delay:
                time.sleep(self.delay)
            value, version = self._compute(task)
        except (_Abandoned, Stopped):
            return self._answer(task, "skipped", started, error="assignment ended while reading")
        except Exception as exc:
            log.warning(
                "assignment %s iteration %d client %d (user %s): %s%s: %s",
                task.assignment_id,
                task.iteration,
                task.client_id,
                task.user,
                type(exc).__name__,
                f" ({exc.kind})" if isinstance(exc, CustomCodeFailure) else "",
                clean(str(exc), 600),
            )
            text = str(exc) if isinstance(exc, CustomCodeError) else f"{type(exc).__name__}: {exc}"
            return self._answer(
                task, "failed", started, error=text, version=getattr(exc, "version", "builtin")
            )
        return self._answer(task, "ok", started, value=value, version=version)

    def _no_longer_wanted(self, task: OnboardTask) -> bool:
        """A task of an assignment that ended, or of an iteration aggregated without it (its
        deadline passed). A vehicle reads only the assignment's end marker, not its record."""
        if time.time() > task.deadline:
            return True
        status = self.redis.get(self.keys.assignment_ended(task.assignment_id))
        if isinstance(status, bytes):
            status = status.decode()
        return status in FINAL_STATUSES

    def _compute(self, task: OnboardTask) -> tuple[object, str]:
        """The on-board value and the code version that produced it."""
        # The spec names each signal by its short name or its VSS path; the source keys readings
        # by signal id, and the methods see them under the name asked for.
        ids = [canonical(s) or s for s in task.signals]
        read = self.sensors.read(
            task.client_id,
            task.assignment_id,
            task.iteration,
            ids,
            task.samples,
            task.frequency,
            deadline=task.deadline,
            stop=lambda: self._no_longer_wanted(task),
        )
        data = {asked: read[sid] for asked, sid in zip(task.signals, ids, strict=True)}
        if self.realtime and not self.sensors.live:  # a live source took the time reading
            self._take_time(task)
        if task.method == "custom":
            return self._custom(task, data)
        params = OnboardParams(
            method=task.method,
            signals=task.signals,
            threshold=task.threshold,
            direction=task.direction,
            sample_size=task.sample_size,
            bins=task.bins,
            q=task.q,
            seed=_seed(task),
            proximal_mu=task.proximal_mu,
        )
        return run_builtin(params, data, task.model), "builtin"

    def _custom(self, task: OnboardTask, data: dict[str, Any]) -> tuple[object, str]:
        """The user's current version on this client, looked up afresh for every task (by the
        pool when it took the task, ``PINNED``, or here)."""
        pin = PINNED.get()
        if pin is not None and pin[:2] == (task.user, task.client_id):
            version = pin[2]
        else:
            version = self.codestore.onboard_version(task.user, task.client_id)
        if version is None:
            raise CustomCodeError(f"user {task.user!r} has no on-board code on client {task.client_id}")
        x: object = (
            data[task.signals[0]].tolist()
            if len(task.signals) == 1
            else {s: data[s].tolist() for s in task.signals}
        )
        if task.federated:
            x = {"data": x, "model": task.model}
        try:
            return self.code.run(version, x), version
        except CustomCodeError as exc:
            exc.version = version  # type: ignore[attr-defined]  # the failure names its version
            raise

    def _take_time(self, task: OnboardTask) -> None:
        """A real vehicle needs samples / frequency seconds to take the readings; stop early
        (and answer ``skipped``) when the assignment ended meanwhile."""
        until = time.monotonic() + task.samples / task.frequency
        while (left := until - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
            if left > 1.0 and self._no_longer_wanted(task):
                raise _Abandoned

    @staticmethod
    def _answer(
        task: OnboardTask,
        status: str,
        started: float,
        value: object = None,
        error: str | None = None,
        version: str = "builtin",
    ) -> dict[str, Any]:
        return OnboardResult(
            assignment_id=task.assignment_id,
            iteration=task.iteration,
            client_id=task.client_id,
            status=status,  # type: ignore[arg-type]
            value=value,
            version=version,
            error=error,
            started_at=started,
            finished_at=time.time(),
        ).to_wire()


class _Abandoned(Exception):
    """The assignment ended while a real-time client was still reading."""


def _seed(task: OnboardTask) -> int:
    digest = hashlib.sha256(f"{task.client_id}:{task.assignment_id}:{task.iteration}".encode())
    return int.from_bytes(digest.digest()[:8], "big")


def answer_for_bad_message(message: object, error: str, started: float | None = None) -> dict[str, Any]:
    """Answer a malformed task with what can be read of it, so the chord still completes."""
    started = time.time() if started is None else started
    fields = message if isinstance(message, dict) else {}

    def pick(name: str, kind: type, default: Any) -> Any:
        value = fields.get(name, default)
        return value if isinstance(value, kind) and not isinstance(value, bool) else default

    return {
        "assignment_id": pick("assignment_id", str, ""),
        "iteration": pick("iteration", int, -1),
        "client_id": pick("client_id", int, 0),
        "status": "failed",
        "value": None,
        "version": "builtin",
        "error": error,
        "started_at": started,
        "finished_at": time.time(),
    }
