"""Malformed messages: refused at the door, logged with whatever can be read of them.

Every item taken off a task queue is checked before kombu parses it (``envelope.admit``,
installed into kombu's Redis transport by ``kombu_guard``): the envelope, the task's name and
size limit, the content type, the body's shape and the headers, and no Celery workflow option
from any publisher. What passes is still handed to Celery through ``GuardedConsumer`` (the
workers' ``worker_consumer``), which logs and deletes a message that Celery itself cannot take
instead of letting the exception stop the worker.

The task functions then take their arguments loosely (``single_argument``) and decode them at
``wire.decode``, so a well-formed message with the wrong arguments is one more logged rejection.
This module also holds the helpers every rejection's log line is made with.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from celery.worker.consumer import Consumer
from kombu.message import Message

from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.text import shorten

log = logging.getLogger("oodida.guard")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean(value: object, limit: int = 80) -> str:
    """``value`` as one short, printable line (log lines must not be forged by what we log)."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:  # an integer too long to print, a hostile __repr__
        text = f"<{type(value).__name__}>"
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return shorten(text, limit)


def describe_origin(message: object, task_id: object = None) -> str:
    """What can be read of a message's origin: its task id, assignment or deployment, user,
    client and iteration (each only when it has a plausible type)."""
    parts = [f"task {clean(task_id)}"] if isinstance(task_id, str) and task_id else []
    fields = message if isinstance(message, Mapping) else {}
    for key, label in (
        ("assignment_id", "assignment"),
        ("deploy_id", "deployment"),
        ("user", "user"),
        ("client_id", "client"),
        ("iteration", "iteration"),
    ):
        value = fields.get(key)
        if (isinstance(value, str) and value) or (isinstance(value, int) and not isinstance(value, bool)):
            parts.append(f"{label} {clean(value, 64)}")
    return ", ".join(parts) if parts else "nothing readable"


def log_rejected(logger: logging.Logger, what: str, message: object, error: object, task_id: object) -> None:
    """The one line every rejected message gets."""
    logger.warning(
        "rejected %s message (%s): %s", what, describe_origin(message, task_id), clean(str(error), 600)
    )


def readable_part(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object:
    """The part of a task's arguments most likely to name its origin (for the log line)."""
    return args[0] if args and isinstance(args[0], Mapping) else kwargs


def single_argument(task: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object:
    """The one message a task takes; MessageError for any other arguments."""
    if len(args) == 1 and not kwargs:
        return args[0]
    names = ", ".join(clean(k, 30) for k in list(kwargs)[:5])
    raise MessageError(
        f"{task} takes one message argument; got {len(args)} positional and {len(kwargs)} keyword "
        f"argument(s){f' ({names})' if names else ''}"
    )


def _where(message: Message) -> str:
    info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
    headers = message.headers if isinstance(message.headers, dict) else {}
    parts = [f"queue {clean(info.get('routing_key') or '?', 40)}"]
    for key in ("task", "id"):
        if isinstance(headers.get(key), str):
            parts.append(f"{key} {clean(headers[key], 80)}")
    return ", ".join(parts)


class GuardedConsumer(Consumer):
    """Celery's consumer, with every task message checked before Celery sees it."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handler = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Message) -> Any:
            try:
                return handler(message)
            except self.connection_errors:
                raise
            except Exception as exc:  # Celery could not take it: never stop the worker
                problem = f"Celery refused it: {type(exc).__name__}: {clean(str(exc), 200)}"
            log.warning("rejected a message (%s): %s; deleted", _where(message), problem)
            if not message.acknowledged:
                message.reject_log_error(log, self.connection_errors)
            return None

        return on_task_received
