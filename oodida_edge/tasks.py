"""The client's Celery tasks: thin wrappers around the runner and the installer."""

from __future__ import annotations

from typing import Any

from celery import Celery

from oodida_core.wire import TASK_INSTALL, TASK_ONBOARD

from .install import Installer
from .runner import OnboardRunner


def register_edge_tasks(app: Celery, runner: OnboardRunner, installer: Installer) -> None:
    @app.task(name=TASK_ONBOARD, acks_late=True)
    def onboard(message: object) -> dict[str, Any]:
        return runner.run(message)

    @app.task(name=TASK_INSTALL, acks_late=True, ignore_result=True)
    def install(message: object) -> dict[str, object]:
        return installer.install(message)
