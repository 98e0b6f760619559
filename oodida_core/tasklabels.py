"""What monitoring shows of a task: short, readable argument lines for Flower.

Celery puts ``argsrepr`` and ``kwargsrepr`` in every task message's headers and in its
``task-sent`` event; Flower shows them in its task list and searches them. By default they are
``repr`` of the arguments, which for an on-board task is a wire message with the model of the
previous iteration in it. Every publisher in the project passes these labels instead: the
assignment or deployment id, the iteration, the user and the client, and little else.

The functions never raise: a label is built from whatever the message holds.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence

from .wire import TASK_CANCEL, TASK_DEPLOY, TASK_INSTALL, TASK_ONBOARD, TASK_START

MAX_LABEL = 512

_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = 8
_repr.maxtuple = 8
_repr.maxdict = 4
_repr.maxlevel = 2

# The fields of each task's message that its label shows, in order; "spec.name" reads a field
# of the nested spec.
LABEL_FIELDS: dict[str, tuple[str, ...]] = {
    TASK_START: ("assignment_id", "user", "spec.name", "spec.mode", "spec.clients", "spec.iterations"),
    TASK_CANCEL: ("assignment_id", "user"),
    TASK_DEPLOY: ("deploy_id", "user", "role", "filename", "clients"),
    TASK_ONBOARD: ("assignment_id", "iteration", "user", "client_id", "method", "signals"),
    TASK_INSTALL: ("deploy_id", "user", "client_id", "filename", "version"),
}


def _value(message: Mapping[str, object], path: str) -> tuple[bool, object]:
    value: object = message
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def join_fields(fields: Sequence[tuple[str, object]]) -> str:
    """``[("iteration", 1), ("user", "alice")]`` -> ``iteration=1, user='alice'``, capped."""
    text = ", ".join(f"{name}={_repr.repr(value)}" for name, value in fields)
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 3] + "..."


def args_label(task_name: str, message: object) -> str:
    """The label of a task whose one argument is ``message`` (a wire message as a dict)."""
    if not isinstance(message, Mapping):
        return _repr.repr(message)
    fields = LABEL_FIELDS.get(task_name)
    if fields is None:
        return join_fields([(k, v) for k, v in message.items() if isinstance(k, str)][:6])
    shown = []
    for path in fields:
        found, value = _value(message, path)
        if found:
            shown.append((path.rpartition(".")[2], value))
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
    """
    if reason is None:
        args = f"answers of {clients} client(s)" if clients is not None else "the chord's answers"
    else:
        args = f"None ({reason}: answers read from the result backend)"
    fields: list[tuple[str, object]] = [("assignment_id", assignment_id), ("iteration", iteration)]
    if user is not None:
        fields.append(("user", user))
    if reason is not None:
        fields.append(("reason", reason))
    return args, join_fields(fields)
