"""Malformed messages: refused at the door, logged with whatever can be read of them.

Celery trusts the shape of every task message it takes off a queue. A message whose body is not
the ``[args, kwargs, embed]`` triple, or whose headers hold the wrong types, makes its consumer
raise; the worker then stops with "Unrecoverable error" and the message, never acknowledged, is
put back for the next worker (a poison message). With the threads pool a bad ``embed`` fails
later, silently, and holds a prefetch slot for good. ``GuardedConsumer`` (the workers'
``worker_consumer``) checks every message first: its size before anything is decoded (a limit
per task name), its content type, that the body decodes and has the triple's shape, and the
types of the headers Celery reads. A message that fails is logged on one line and deleted; the
rest go to Celery unchanged. Unknown task names are Celery's business: it logs "Received
unregistered task" and discards the message.

The task functions then take their arguments loosely (``single_argument``) and decode them at
``wire.decode``, so a well-formed message with the wrong arguments is one more logged rejection.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from celery.worker.consumer import Consumer
from kombu.message import Message

from .errors import MessageError
from .wire import message_limit

log = logging.getLogger("oodida.guard")

_OPTIONAL_TEXT_HEADERS = (
    "lang",
    "root_id",
    "parent_id",
    "group",
    "shadow",
    "eta",
    "expires",
    "origin",
    "argsrepr",
    "kwargsrepr",
    "replaced_task_nesting",
)
_EMBED_KEYS = frozenset({"callbacks", "errbacks", "chain", "chord"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean(value: object, limit: int = 80) -> str:
    """``value`` as one short, printable line (log lines must not be forged by what we log)."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:  # an integer too long to print, a hostile __repr__
        text = f"<{type(value).__name__}>"
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _string_keys(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _signature(value: object) -> bool:
    """Whether ``value`` looks like a serialised Celery signature (a mapping naming its task)."""
    return isinstance(value, dict) and _string_keys(value) and isinstance(value.get("task"), str)


def _headers_problem(headers: object) -> str | None:
    if not isinstance(headers, dict):
        return "the message has no headers"
    if not isinstance(headers.get("task"), str) or not headers["task"]:
        return "the message names no task"
    if not isinstance(headers.get("id"), str) or not headers["id"]:
        return "the message has no task id"
    for name in _OPTIONAL_TEXT_HEADERS:
        value = headers.get(name)
        if (value is not None and not isinstance(value, (str, int))) or isinstance(value, bool):
            return f"header {name!r} has the wrong type ({type(value).__name__})"
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, (list, tuple))
        and len(limits) == 2
        and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in limits)
    ):
        return "header 'timelimit' is not [hard, soft]"
    retries = headers.get("retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)):
        return "header 'retries' is not an integer"
    if headers.get("ignore_result") not in (None, True, False):
        return "header 'ignore_result' is not a boolean"
    if headers.get("stamps") is not None and not _string_keys(headers["stamps"]):
        return "header 'stamps' is not a mapping"
    if "args" in headers or "kwargs" in headers:
        return "task arguments in the headers (an old protocol) are not accepted"
    return None


def _body_problem(payload: object) -> str | None:
    if not isinstance(payload, (list, tuple)) or len(payload) != 3:
        return f"the body is a {type(payload).__name__}, not [args, kwargs, options]"
    args, kwargs, embed = payload
    if not isinstance(args, (list, tuple)):
        return f"the task arguments are a {type(args).__name__}, not a list"
    if not _string_keys(kwargs):
        return "the keyword arguments are not a mapping with string keys"
    if embed is not None:
        if not _string_keys(embed):
            return "the options are not a mapping with string keys"
        unknown = set(embed) - _EMBED_KEYS
        if unknown:
            return f"unknown options: {clean(sorted(unknown), 60)}"
        for key in ("callbacks", "errbacks", "chain"):
            value = embed.get(key)
            if value is not None and not (
                isinstance(value, (list, tuple)) and all(_signature(v) for v in value)
            ):
                return f"option {key!r} is not a list of signatures"
        if embed.get("chord") is not None and not _signature(embed["chord"]):
            return "option 'chord' is not a signature"
    return None


def message_problem(message: Message, accept: frozenset[str] = frozenset({"application/json"})) -> str | None:
    """Why a task message cannot be handed to Celery, or None when it can."""
    headers = message.headers
    problem = _headers_problem(headers)
    if problem is not None:
        return problem
    body = message.body
    size = len(body) if isinstance(body, (bytes, str)) else 0
    limit = message_limit(headers["task"])
    if size > limit:
        return f"the body is {size:,} bytes; {headers['task']} messages are limited to {limit:,} bytes"
    if message.content_type not in accept:
        return f"content type {clean(message.content_type, 60)} is not accepted (JSON only)"
    try:
        payload = message.decode()
    except Exception as exc:  # not UTF-8, not JSON, nested too deep
        return f"the body does not decode: {clean(str(exc), 200)}"
    return _body_problem(payload)


def _where(message: Message) -> str:
    info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
    headers = message.headers if isinstance(message.headers, dict) else {}
    parts = [f"queue {clean(info.get('routing_key') or '?', 40)}"]
    for key in ("task", "id"):
        if isinstance(headers.get(key), str):
            parts.append(f"{'task' if key == 'task' else 'id'} {clean(headers[key], 80)}")
    return ", ".join(parts)


class GuardedConsumer(Consumer):
    """Celery's consumer, with every task message checked before Celery sees it."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handler = super().create_task_handler(*args, **kwargs)
        accept = frozenset(self.app.conf.accept_content or ()) | {"application/json"}
        accept = frozenset(_MIME.get(a, a) for a in accept)

        def on_task_received(message: Message) -> Any:
            try:
                problem = message_problem(message, accept)
            except Exception as exc:  # a message odd enough to break the checks themselves
                problem = f"the message cannot be read: {type(exc).__name__}"
            if problem is None:
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


_MIME = {"json": "application/json"}
