"""The cloud's Celery tasks: thin wrappers around one Orchestrator and one Deployer.

Each task takes its arguments loosely and hands them on; they are decoded at ``wire.decode``.
A message with the wrong arguments is logged and dropped, never raised into Celery (no retry,
no traceback, the worker goes on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from oodida_core.errors import MessageError
from oodida_core.guard import log_rejected, readable_part, single_argument
from oodida_core.wire import (
    TASK_AUTHENTICATE,
    TASK_CANCEL,
    TASK_DEPLOY,
    TASK_FINISH_ITERATION,
    TASK_PURGE,
    TASK_ROLLBACK,
    TASK_START,
    TASK_VERSIONS,
    FinishIteration,
    decode,
)

from .deploy import Deployer
from .orchestrator import Orchestrator
from .purge import Purger

log = logging.getLogger("oodida.cloud")


def _one_message(
    task: Task, name: str, what: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bool, object]:
    """(True, the message) or, logged, (False, None) when the task got other arguments."""
    try:
        return True, single_argument(name, args, kwargs)
    except MessageError as exc:
        log_rejected(log, what, readable_part(args, kwargs), exc, task.request.id)
        return False, None


def register_cloud_tasks(app: Celery, orchestrator: Orchestrator, deployer: Deployer, purger: Purger) -> None:
    def one_message_task(name: str, what: str, handle: Callable[[object, str | None], str]) -> None:
        @app.task(name=name, acks_late=True, ignore_result=True, bind=True)
        def run(self: Task, *args: Any, **kwargs: Any) -> str:
            ok, message = _one_message(self, name, what, args, kwargs)
            return handle(message, self.request.id) if ok else "rejected"

    one_message_task(TASK_START, "a start", orchestrator.start)
    one_message_task(TASK_CANCEL, "a cancel", orchestrator.cancel)
    one_message_task(TASK_DEPLOY, "a deploy", deployer.deploy)
    one_message_task(TASK_AUTHENTICATE, "an authenticate", orchestrator.gate.authenticate)
    one_message_task(TASK_ROLLBACK, "a rollback", deployer.rollback)
    one_message_task(TASK_VERSIONS, "a versions", deployer.versions)
    one_message_task(TASK_PURGE, "a purge", purger.purge)

    @app.task(name=TASK_FINISH_ITERATION, acks_late=True, ignore_result=True, bind=True)
    def finish_iteration(self: Task, *args: Any, **kwargs: Any) -> str:
        try:
            if len(args) > 1:
                raise MessageError(f"{TASK_FINISH_ITERATION} takes the answers and keywords only")
            if args:
                kwargs = {**kwargs, "answers": args[0]}
            request = decode(FinishIteration, kwargs)
        except MessageError as exc:
            log_rejected(log, "a finish_iteration", readable_part(args, kwargs), exc, self.request.id)
            return "rejected"
        return orchestrator.finish_iteration(
            request.answers, request.assignment_id, request.iteration, request.reason
        )
