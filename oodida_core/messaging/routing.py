"""Where every task goes: the one router of every app (Celery's ``task_routes``).

A request of the library and a chord's off-board step go to the cloud's queue; an on-board
task and an install go to the queue of the client their message names (``client_id``). No
publisher names a queue: ``app.send_task(TASK_ONBOARD, args=(message,))`` lands on
``client.<message["client_id"]>``. A task of Celery's own (none is sent) falls to the default
queue, ``cloud``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.keys import CLOUD_QUEUE, client_queue
from oodida_core.protocol.wire import (
    TASK_AUTHENTICATE,
    TASK_CANCEL,
    TASK_DEPLOY,
    TASK_FINISH_ITERATION,
    TASK_INSTALL,
    TASK_ONBOARD,
    TASK_PURGE,
    TASK_ROLLBACK,
    TASK_START,
    TASK_VERSIONS,
)

CLOUD_TASKS: frozenset[str] = frozenset(
    {
        TASK_START,
        TASK_FINISH_ITERATION,
        TASK_CANCEL,
        TASK_DEPLOY,
        TASK_AUTHENTICATE,
        TASK_ROLLBACK,
        TASK_VERSIONS,
        TASK_PURGE,
    }
)
CLIENT_TASKS: frozenset[str] = frozenset({TASK_ONBOARD, TASK_INSTALL})


def queue_for(name: str, args: Sequence[object] = ()) -> str | None:
    """The queue of task ``name`` sent with ``args``; None for a task that is not the project's.

    A client's task whose message names no client is a bug of its publisher: MessageError,
    never the default queue (the cloud would take a vehicle's task)."""
    if name in CLIENT_TASKS:
        message = args[0] if args else None
        client = message.get("client_id") if isinstance(message, Mapping) else None
        if not isinstance(client, int) or isinstance(client, bool) or client < 1:
            raise MessageError(f"{name} names no client (client_id {client!r}): it has no queue")
        return client_queue(client)
    if name in CLOUD_TASKS:
        return CLOUD_QUEUE
    return None


def route_task(
    name: str,
    args: Sequence[object] | None,
    kwargs: Mapping[str, object] | None,
    options: Mapping[str, Any],
    task: object = None,
    **_: object,
) -> dict[str, str] | None:
    """Celery's router interface (``task_routes``): ``{"queue": ...}`` for the project's tasks.

    A queue given to ``send_task`` wins (Celery merges the explicit options over the route),
    so it is not second-guessed here."""
    if options.get("queue") is not None:
        return None
    queue = queue_for(name, args or ())
    return None if queue is None else {"queue": queue}
