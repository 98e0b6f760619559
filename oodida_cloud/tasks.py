"""The cloud's Celery tasks: one thin wrapper per route of the cloud's request path.

Each task takes its arguments loosely and hands them to the ``Dispatcher`` (``requests.py``),
which decodes them at ``wire.decode``, authenticates and checks ownership before the handler
runs. A message with the wrong arguments is logged and dropped, never raised into Celery (no
retry, no traceback, the worker goes on). A task returns its ``Outcome``'s plain string, as
the worker's log and Flower show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celery import Celery, Task

from .requests import Dispatcher, Route


def register_cloud_tasks(app: Celery, dispatcher: Dispatcher, routes: Iterable[Route]) -> None:
    """Register one task per route on ``app``."""
    for route in routes:
        _register(app, dispatcher, route)


def _register(app: Celery, dispatcher: Dispatcher, route: Route) -> None:
    @app.task(name=route.task, acks_late=True, ignore_result=True, bind=True)
    def run(self: Task, *args: Any, **kwargs: Any) -> str:
        return dispatcher(route, args, kwargs, self.request.id).value
