"""The client's Celery task: a thin wrapper around one OnboardRunner."""

from __future__ import annotations

from typing import Any

from celery import Celery

from oodida_core.wire import TASK_ONBOARD

from .runner import OnboardRunner


def register_edge_tasks(app: Celery, runner: OnboardRunner) -> None:
    @app.task(name=TASK_ONBOARD, acks_late=True)
    def onboard(message: object) -> dict[str, Any]:
        return runner.run(message)
