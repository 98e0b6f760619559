"""The cloud's Celery tasks: thin wrappers around one Orchestrator."""

from __future__ import annotations

from typing import Any

from celery import Celery

from oodida_core.wire import (
    TASK_AUTHENTICATE,
    TASK_CANCEL,
    TASK_DEPLOY,
    TASK_FINISH_ITERATION,
    TASK_ROLLBACK,
    TASK_START,
    TASK_VERSIONS,
)

from .deploy import Deployer
from .orchestrator import Orchestrator


def register_cloud_tasks(app: Celery, orchestrator: Orchestrator, deployer: Deployer) -> None:
    @app.task(name=TASK_START, acks_late=True, ignore_result=True)
    def start(message: object) -> str:
        return orchestrator.start(message)

    @app.task(name=TASK_FINISH_ITERATION, acks_late=True, ignore_result=True)
    def finish_iteration(
        answers: list[Any] | None = None,
        *,
        assignment_id: str,
        iteration: int,
        reason: str = "complete",
    ) -> str:
        return orchestrator.finish_iteration(answers, assignment_id, iteration, reason)

    @app.task(name=TASK_CANCEL, acks_late=True, ignore_result=True)
    def cancel(message: object) -> str:
        return orchestrator.cancel(message)

    @app.task(name=TASK_DEPLOY, acks_late=True, ignore_result=True)
    def deploy(message: object) -> str:
        return deployer.deploy(message)

    @app.task(name=TASK_AUTHENTICATE, acks_late=True, ignore_result=True)
    def authenticate(message: object) -> str:
        return orchestrator.gate.authenticate(message)

    @app.task(name=TASK_ROLLBACK, acks_late=True, ignore_result=True)
    def rollback(message: object) -> str:
        return deployer.rollback(message)

    @app.task(name=TASK_VERSIONS, acks_late=True, ignore_result=True)
    def versions(message: object) -> str:
        return deployer.versions(message)
