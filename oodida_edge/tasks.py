"""The client's Celery tasks: thin wrappers around the runner and the installer.

Each task takes its arguments loosely: a message with the wrong arguments gets the same
answer as a malformed one (a ``failed`` answer, or a refused install), logged, never raised.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from oodida_core.errors import MessageError
from oodida_core.guard import log_rejected, readable_part, single_argument
from oodida_core.wire import TASK_INSTALL, TASK_ONBOARD

from .install import Installer
from .runner import OnboardRunner, answer_for_bad_message

log = logging.getLogger("oodida.edge")


def register_edge_tasks(app: Celery, runner: OnboardRunner, installer: Installer) -> None:
    @app.task(name=TASK_ONBOARD, acks_late=True, bind=True)
    def onboard(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            message = single_argument(TASK_ONBOARD, args, kwargs)
        except MessageError as exc:
            log_rejected(log, "an on-board", readable_part(args, kwargs), exc, self.request.id)
            return answer_for_bad_message(readable_part(args, kwargs), str(exc))
        return runner.run(message, self.request.id)

    @app.task(name=TASK_INSTALL, acks_late=True, ignore_result=True, bind=True)
    def install(self: Task, *args: Any, **kwargs: Any) -> dict[str, object]:
        try:
            message = single_argument(TASK_INSTALL, args, kwargs)
        except MessageError as exc:
            log_rejected(log, "an install", readable_part(args, kwargs), exc, self.request.id)
            return {"accepted": False, "reason": str(exc)}
        return installer.install(message, self.request.id)
