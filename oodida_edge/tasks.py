"""The client's Celery tasks: thin wrappers around the runner and the installer.

Each task takes its arguments loosely: a message with the wrong arguments gets the same
answer as a malformed one (a ``failed`` answer, or a refused install), logged, never raised.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from oodida_core.messaging.guard import log_rejected, readable_part, single_argument
from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.text import printable
from oodida_core.protocol.wire import TASK_INSTALL, TASK_ONBOARD

from .install import Installer
from .quorum import QuorumWatch, quorum_of
from .runner import OnboardRunner, answer_for_bad_message

log = logging.getLogger("oodida.edge")

FAILED_EVENT = "task-onboard-failed"  # counted by Flower's /metrics as flower_events_total{type=...}


class Answer:
    """An on-board answer as the task returns it. Stored as its dict (kombu's JSON encoder
    calls ``__json__``), so the chord counts it like any result; its repr, which Celery puts
    in the task-succeeded event and Flower shows as the task's result, starts with
    ``FAILED`` when the task failed, so that an operator sees failures at a glance without a
    header task raising (which would fail the whole chord)."""

    __slots__ = ("buffered", "data", "quorum")

    def __init__(self, data: dict[str, Any], quorum: int | None = None, buffered: bool = False) -> None:
        self.data = data
        self.quorum = quorum  # the task's min_clients: announced after the answer is stored
        self.buffered = buffered  # asynchronous aggregation: every stored answer is announced

    def __json__(self) -> dict[str, Any]:
        return self.data

    def __repr__(self) -> str:
        d = self.data
        if d.get("status") == "failed":
            error = printable(" ".join(str(d.get("error") or "no message").split())[:160])
            return f"FAILED ({d.get('version', 'builtin')}): {error}"
        return f"{d.get('status', '?')} ({d.get('version', 'builtin')}): {d.get('value')!r:.120}"


def label_failure(
    task: Task, answer: dict[str, Any], quorum: int | None = None, buffered: bool = False
) -> Answer:
    """The answer as the task returns it; a failed answer also sends a ``task-onboard-failed``
    event (with the code version and whether it was custom code) when task events are on."""
    if answer.get("status") == "failed" and task.app.conf.worker_send_task_events:
        version = str(answer.get("version") or "builtin")
        try:
            task.send_event(FAILED_EVENT, name=task.name, version=version, custom=version != "builtin")
        except Exception as exc:  # monitoring must never fail the answer
            log.warning("could not send %s for task %s: %s", FAILED_EVENT, task.request.id, exc)
    return Answer(answer, quorum, buffered)


def register_edge_tasks(app: Celery, runner: OnboardRunner, installer: Installer) -> None:
    watch = QuorumWatch(app, runner.redis, runner.keys)
    runner.closed = watch.closed  # a quorum task of an iteration closed before its turn: skipped

    def announce(self: Task, retval: object, task_id: str, args: Any, kwargs: Any) -> None:
        """Celery calls it once the answer is stored and joined to the chord (quorum.py)."""
        if isinstance(retval, Answer) and retval.quorum is not None:
            watch.answered(retval.data, retval.quorum)
        elif isinstance(retval, Answer) and retval.buffered:
            watch.buffered(retval.data)

    @app.task(name=TASK_ONBOARD, acks_late=True, bind=True, on_success=announce)
    def onboard(self: Task, *args: Any, **kwargs: Any) -> Answer:
        try:
            message = single_argument(TASK_ONBOARD, args, kwargs)
        except MessageError as exc:
            log_rejected(log, "an on-board", readable_part(args, kwargs), exc, self.request.id)
            return label_failure(self, answer_for_bad_message(readable_part(args, kwargs), str(exc)))
        buffered = isinstance(message, dict) and message.get("buffered") is True
        return label_failure(self, runner.run(message, self.request.id), quorum_of(message), buffered)

    @app.task(name=TASK_INSTALL, acks_late=True, ignore_result=True, bind=True)
    def install(self: Task, *args: Any, **kwargs: Any) -> dict[str, object]:
        try:
            message = single_argument(TASK_INSTALL, args, kwargs)
        except MessageError as exc:
            log_rejected(log, "an install", readable_part(args, kwargs), exc, self.request.id)
            return {"accepted": False, "reason": str(exc)}
        return installer.install(message, self.request.id)
