"""What monitoring shows of a task: short, readable argument lines for Flower.

Celery puts ``argsrepr`` and ``kwargsrepr`` in every task message's headers and in its
``task-sent`` event; Flower shows them in its task list and searches them. By default they are
``repr`` of the arguments, which for an on-board task is a wire message with the model of the
previous iteration in it, and for a request the user's token. Every app of the project labels
its messages instead (``LabellingAMQP``, the app's ``amqp`` class), e.g.
``client=3 iteration=1 assignment=1be9d267fee3458a user=alice method=average signals=speed``:
the client, the iteration, the assignment or deployment id and the user first. A publisher
passes labels only for what its message does not hold (the user of an off-board step).

The functions never raise: a label is built from whatever the message holds.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Mapping, Sequence
from typing import Any

from celery.app.amqp import AMQP

from oodida_core.protocol.text import shorten
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

MAX_LABEL = 512
PROJECT_TASKS = "oodida."  # the prefix of every task name of the project (wire.py)

_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = 8
_repr.maxtuple = 8
_repr.maxdict = 4
_repr.maxlevel = 2

# The fields of each task's message that its label shows, in order, under a short name;
# "spec.name" reads a field of the nested spec. Flower cuts long arguments in its task list,
# so what tells rows of one assignment apart (client, iteration) comes first.
LABEL_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    TASK_START: (
        ("assignment", "assignment_id"),
        ("user", "user"),
        ("name", "spec.name"),
        ("mode", "spec.mode"),
        ("clients", "spec.clients"),
        ("iterations", "spec.iterations"),
    ),
    TASK_CANCEL: (("assignment", "assignment_id"), ("user", "user")),
    TASK_PURGE: (("assignment", "assignment_id"), ("user", "user")),
    TASK_AUTHENTICATE: (("user", "user"),),
    TASK_ROLLBACK: (("user", "user"), ("role", "role"), ("clients", "clients")),
    TASK_VERSIONS: (("user", "user"), ("clients", "clients")),
    TASK_DEPLOY: (
        ("deployment", "deploy_id"),
        ("user", "user"),
        ("role", "role"),
        ("file", "filename"),
        ("clients", "clients"),
    ),
    TASK_ONBOARD: (
        ("client", "client_id"),
        ("iteration", "iteration"),
        ("assignment", "assignment_id"),
        ("user", "user"),
        ("method", "method"),
        ("signals", "signals"),
    ),
    TASK_INSTALL: (
        ("client", "client_id"),
        ("deployment", "deploy_id"),
        ("user", "user"),
        ("file", "filename"),
        ("version", "version"),
    ),
}

_PLAIN = re.compile(r"[\w.:@+/-]{1,80}")


def _value(message: Mapping[str, object], path: str) -> tuple[bool, object]:
    value: object = message
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _show(value: object) -> str:
    """Plain words and numbers as they are, lists of them joined by commas, the rest as repr."""
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    if (
        isinstance(value, (list, tuple))
        and 0 < len(value) <= 8
        and all(isinstance(v, (str, int)) and _PLAIN.fullmatch(str(v)) for v in value)
    ):
        return ",".join(str(v) for v in value)
    return _repr.repr(value)


def join_fields(fields: Sequence[tuple[str, object]]) -> str:
    """``[("iteration", 1), ("user", "alice")]`` -> ``iteration=1 user=alice``, capped."""
    text = " ".join(f"{name}={_show(value)}" for name, value in fields)
    return shorten(text, MAX_LABEL)


def args_label(task_name: str, message: object) -> str:
    """The label of a task whose one argument is ``message`` (a wire message as a dict)."""
    if not isinstance(message, Mapping):
        return _repr.repr(message)
    fields = LABEL_FIELDS.get(task_name)
    if fields is None:
        shown_fields = [(k, v) for k, v in message.items() if isinstance(k, str) and k != "token"]
        return join_fields(shown_fields[:6])  # a user's token is never shown
    shown = []
    for label, path in fields:
        found, value = _value(message, path)
        if found:
            shown.append((label, value))
    return join_fields(shown)


def finish_labels(
    assignment_id: str,
    iteration: int,
    user: str | None = None,
    clients: int | None = None,
    reason: str | None = None,
) -> tuple[str, str]:
    """``(argsrepr, kwargsrepr)`` of an off-board step (``oodida.cloud.finish_iteration``).

    Its argument is the list of the iteration's answers, filled in by the chord when the last
    client answered, or None when a deadline or a cancel reads them from the result backend.
    Flower's task list shows the arguments column only, so that label names the assignment,
    the iteration and the user too; the keyword label is the keyword arguments as they are.
    """
    fields: list[tuple[str, object]] = [("iteration", iteration), ("assignment", assignment_id)]
    if user is not None:
        fields.append(("user", user))
    if reason is not None:
        fields.append(("ended_by", reason))  # the answers are read from the result backend
    elif clients is not None:
        fields.append(("answers", clients))  # the chord's: one from each client
    kwargs: dict[str, object] = {"assignment_id": assignment_id, "iteration": iteration}
    if reason is not None:
        kwargs["reason"] = reason
    return join_fields(fields), _repr.repr(kwargs)


def message_labels(
    task_name: str, args: Sequence[object], kwargs: Mapping[str, object]
) -> tuple[str | None, str | None]:
    """``(argsrepr, kwargsrepr)`` of a message of the project, built from its arguments alone;
    None for what is left to Celery's ``repr`` (a task that is not the project's)."""
    if not task_name.startswith(PROJECT_TASKS):
        return None, None
    if task_name == TASK_FINISH_ITERATION:
        aid, index, reason = kwargs.get("assignment_id"), kwargs.get("iteration"), kwargs.get("reason")
        if isinstance(aid, str) and isinstance(index, int):
            return finish_labels(aid, index, reason=reason if isinstance(reason, str) else None)
    if len(args) == 1 and not kwargs:
        return args_label(task_name, args[0]), None
    return _repr.repr(tuple(args)), _repr.repr(dict(kwargs))  # never a long repr, nor a token


class LabellingAMQP(AMQP):
    """Celery's message builder, labelling every task message it builds (``message_labels``)
    unless its publisher passed the labels: Celery's ``repr`` of the arguments never reaches a
    message's headers or its ``task-sent`` event."""

    def as_task_v2(
        self,
        task_id: str,
        name: str,
        args: Sequence[object] | None = None,
        kwargs: Mapping[str, object] | None = None,
        *more: Any,
        argsrepr: str | None = None,
        kwargsrepr: str | None = None,
        **options: Any,
    ) -> Any:
        if argsrepr is None or kwargsrepr is None:
            shown_args, shown_kwargs = message_labels(name, args or (), kwargs or {})
            argsrepr = shown_args if argsrepr is None else argsrepr
            kwargsrepr = shown_kwargs if kwargsrepr is None else kwargsrepr
        return super().as_task_v2(
            task_id, name, args, kwargs, *more, argsrepr=argsrepr, kwargsrepr=kwargsrepr, **options
        )
