"""The door of every task queue: a raw Redis item is checked here before kombu parses it.

kombu's Redis transport pops an item off ``cloud`` or ``client.<id>`` and parses it as its
envelope (JSON of body, headers, properties, content type and encoding) before Celery or
``guard.GuardedConsumer`` sees it; an item that is not such an envelope raised there and
stopped the worker. ``kombu_guard`` hands every popped item to ``admit`` first, which returns
the envelope kombu may parse, or why it is dropped.

On a task queue an admitted envelope is one that this project's own publishers write: a known
task for that queue, JSON in UTF-8, base64 body within the task's size limit that decodes to
Celery's ``[args, kwargs, options]``, and headers of the right types. No Celery workflow
option is honoured: callbacks, errbacks and chains never; a chord only on an on-board task,
and only the iteration's callback to the cloud (which is what the cloud's chords carry);
no eta, expiry, stamps or compression; ``ignore_result`` cannot be switched off for a task that
stores nothing. The envelope handed on is rebuilt: its properties are ours (a fresh delivery
tag, the queue it was taken from as its routing key, no reply channel), whatever the publisher
wrote there, so that a restored message goes back to the queue it came from and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.wire import (
    ID_PATTERN,
    MESSAGE_LIMITS,
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
    Wire,
    decode,
)

CLOUD_TASKS = frozenset(
    {
        TASK_START,
        TASK_CANCEL,
        TASK_DEPLOY,
        TASK_AUTHENTICATE,
        TASK_ROLLBACK,
        TASK_VERSIONS,
        TASK_PURGE,
        TASK_FINISH_ITERATION,
    }
)
CLIENT_TASKS = frozenset({TASK_ONBOARD, TASK_INSTALL})
STORES_RESULT = frozenset({TASK_ONBOARD})  # every other task is defined with ignore_result
_CLIENT_QUEUE = re.compile(r"^client\.[1-9][0-9]{0,17}$")
_TASK_FIELD = re.compile(r'"task": ?"([A-Za-z0-9_.:@-]{1,200})"')
_ID_FIELD = re.compile(r'"id": ?"([A-Za-z0-9_.:@-]{1,200})"')
ENVELOPE_SLACK = 256 * 1024  # headers and properties around a base64 body


def _utf8(text: str) -> str:
    text.encode("utf-8")  # a lone surrogate cannot be stored, logged or shown
    return text


class Strict(Wire):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


TaskId = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Text = Annotated[StrictStr, Field(max_length=64 * 1024), AfterValidator(_utf8)]
Limit = Annotated[float, Field(ge=0, allow_inf_nan=False)] | None


class DeliveryInfo(Strict):
    exchange: Annotated[StrictStr, Field(max_length=200)] = ""
    routing_key: Annotated[StrictStr, Field(max_length=200)]
    redelivered: StrictBool | None = None


class Properties(Strict):
    """What kombu reads of the properties; anything else there is dropped (never honoured)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)
    body_encoding: Literal["base64"]
    delivery_tag: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    delivery_info: DeliveryInfo
    priority: Annotated[StrictInt, Field(ge=0, le=255)] | None = None


class Headers(Strict):
    """Celery's protocol-2 headers, each with the type and value our publishers give it."""

    task: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    id: TaskId
    lang: Literal["py"] = "py"
    shadow: Text | None = None
    eta: None = None
    expires: None = None
    group: TaskId | None = None
    group_index: Annotated[StrictInt, Field(ge=0, le=10**9)] | None = None
    retries: Annotated[StrictInt, Field(ge=0, le=1000)] = 0
    timelimit: Annotated[list[Limit], Field(min_length=2, max_length=2)] | None = None
    root_id: TaskId | None = None
    parent_id: TaskId | None = None
    argsrepr: Text | None = None
    kwargsrepr: Text | None = None
    origin: Annotated[Text, Field(max_length=512)] | None = None
    ignore_result: StrictBool | None = None
    replaced_task_nesting: Literal[0] = 0
    stamped_headers: Annotated[list[StrictStr], Field(max_length=0)] | None = None
    stamps: Annotated[dict[str, Any], Field(max_length=0)] | None = None
    redelivered: StrictBool | None = None


class Envelope(Strict):
    body: StrictStr
    content_type: Literal["application/json"] = Field(alias="content-type")
    content_encoding: Literal["utf-8"] = Field(alias="content-encoding")
    headers: dict[str, Any]
    properties: Properties


class CallbackKwargs(Strict):
    assignment_id: Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
    iteration: Annotated[StrictInt, Field(ge=0)]


class CallbackOptions(Strict):
    queue: Literal["cloud"]
    task_id: TaskId
    group_id: TaskId
    reply_to: Annotated[StrictStr, Field(max_length=200)] | None = None
    argsrepr: Text | None = None
    kwargsrepr: Text | None = None


class ChordCallback(Strict):
    """The one chord an on-board task may carry: its iteration's callback on the cloud queue."""

    task: Literal["oodida.cloud.finish_iteration"]
    args: Annotated[list[Any], Field(max_length=0)]
    kwargs: CallbackKwargs
    options: CallbackOptions
    subtask_type: None = None
    immutable: Literal[True]  # ``.si``: Celery hands the callback none of the chord's answers


@dataclass(frozen=True)
class Refused:
    """Why an item was dropped, with what could be read of it (for the one log line)."""

    reason: str
    task: str | None = None
    task_id: str | None = None


def queue_tasks(queue: str) -> frozenset[str] | None:
    """The tasks a task queue carries, or None for any other queue (envelope checks only)."""
    if queue == "cloud":
        return CLOUD_TASKS
    return CLIENT_TASKS if _CLIENT_QUEUE.match(queue) else None


def _first_error(exc: MessageError) -> str:
    return str(exc).replace("malformed ", "", 1)


def _parse(raw: bytes | str, limit: int) -> object:
    cap = limit * 4 // 3 + ENVELOPE_SLACK  # the body is base64 in the envelope
    if len(raw) > cap:
        raise MessageError(
            f"the item is {len(raw):,} bytes; messages are limited to {limit:,} bytes here "
            f"({cap:,} as an envelope)"
        )
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError(f"the item is not a JSON envelope: {type(exc).__name__}: {exc}") from None


def element_limit(limit: int) -> int:
    """How many JSON values (counted by their commas and brackets) a body of ``limit`` bytes
    may hold: one per 16 bytes, at least 4096."""
    return max(4096, limit // 16)


def _raw_limit(raw: bytes | str, tasks: frozenset[str]) -> int:
    """The size limit to apply to ``raw`` before it is parsed: the largest limit of the tasks
    named at its ends (where kombu writes the headers) if it names served tasks, else the
    largest limit of the tasks ``tasks`` (the queue's). A name that lies only moves the item
    under the queue's limit; the task's own limit applies again to the body before decoding."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) and len(raw) <= 131072 else ""
    if isinstance(raw, bytes) and len(raw) > 131072:
        text = (raw[:65536] + raw[-65536:]).decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw[:65536] + raw[-65536:] if len(raw) > 131072 else raw
    named = {m.group(1) for m in _TASK_FIELD.finditer(text)}
    if named and named <= tasks:
        return max(MESSAGE_LIMITS[t] for t in named)
    return max(MESSAGE_LIMITS[t] for t in tasks)


def _body(envelope: Envelope, task: str) -> object:
    limit = MESSAGE_LIMITS.get(task, 0)
    if len(envelope.body) * 3 // 4 > limit + 2:
        size = len(envelope.body) * 3 // 4
        raise MessageError(
            f"the body is about {size:,} bytes; {task} messages are limited to {limit:,} bytes"
        )
    try:
        payload = base64.b64decode(envelope.body, validate=True)
    except (binascii.Error, ValueError):
        raise MessageError("the body is not base64 though the envelope says so") from None
    if len(payload) > limit:
        raise MessageError(
            f"the body is {len(payload):,} bytes; {task} messages are limited to {limit:,} bytes"
        )
    elements = payload.count(b",") + payload.count(b"[") + payload.count(b"{")
    if elements > element_limit(limit):  # ``[{},{},...]`` costs ~30 times its size once decoded
        raise MessageError(
            f"the body has about {elements:,} elements; {task} messages are limited to "
            f"{element_limit(limit):,}"
        )
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError(f"the body does not decode: {type(exc).__name__}: {exc}") from None


def _workflow(task: str, headers: Headers, body: object) -> None:
    """The body is Celery's triple and names no workflow option but the iteration's chord."""
    if not isinstance(body, list) or len(body) != 3:
        raise MessageError(f"the body is a {type(body).__name__}, not [args, kwargs, options]")
    args, kwargs, embed = body
    if not isinstance(args, list):
        raise MessageError(f"the task arguments are a {type(args).__name__}, not a list")
    if not isinstance(kwargs, dict):
        raise MessageError("the keyword arguments are not a mapping with string keys")
    if embed is None:
        embed = {}
    if not isinstance(embed, dict):
        raise MessageError("the options are not a mapping with string keys")
    unknown = set(embed) - {"callbacks", "errbacks", "chain", "chord"}
    if unknown:
        raise MessageError(f"unknown options: {sorted(unknown)[:5]}")
    for key in ("callbacks", "errbacks", "chain"):
        if embed.get(key):
            raise MessageError(f"workflow option {key!r} is never honoured")
    chord = embed.get("chord")
    if task == TASK_ONBOARD and chord is not None:
        callback = decode(ChordCallback, chord)
        if headers.group != callback.options.group_id or headers.group_index is None:
            raise MessageError("the chord's group is not the task's group")
    elif chord is not None:
        raise MessageError(f"workflow option 'chord' is never honoured on {task}")
    elif headers.group is not None and task != TASK_FINISH_ITERATION:
        raise MessageError(f"header 'group' is never honoured on {task}")
    if headers.ignore_result is False and task not in STORES_RESULT:
        raise MessageError(f"{task} stores no result (ignore_result cannot be switched off)")
    if task in STORES_RESULT and headers.ignore_result is not None:
        raise MessageError(f"{task} stores its result (ignore_result cannot be set)")


def _screen(raw: bytes | str, queue: str, tasks: frozenset[str] | None) -> dict[str, Any]:
    limit = _raw_limit(raw, tasks) if tasks else max(MESSAGE_LIMITS.values())
    item = _parse(raw, limit)
    if not isinstance(item, dict):
        raise MessageError(f"the item is a JSON {type(item).__name__}, not an envelope")
    envelope = decode(Envelope, item)
    properties = {
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "delivery_mode": 2,
    }
    if tasks is None:  # a reply queue: kombu's own checks suffice once the envelope is sound
        if "compression" in envelope.headers:
            raise MessageError("compressed messages are not accepted")
        return {**item, "properties": {**item["properties"], **properties}}
    task, task_id = envelope.headers.get("task"), envelope.headers.get("id")
    try:
        if isinstance(task, str) and task not in tasks:
            raise MessageError(f"task {task[:200]!r} is not served here")
        headers = decode(Headers, envelope.headers)
        _workflow(headers.task, headers, _body(envelope, headers.task))
    except MessageError as exc:
        readable = (task if isinstance(task, str) else None, task_id if isinstance(task_id, str) else None)
        raise RefusedError(Refused(_first_error(exc), *readable)) from None
    return {
        "body": envelope.body,
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": envelope.headers,  # every key known and of its type (Headers)
        "properties": {**properties, "correlation_id": headers.id},
    }


def admit(raw: bytes | str, queue: str) -> dict[str, Any] | Refused:
    """The envelope kombu may parse for an item popped off ``queue``, or why it is dropped."""
    tasks = queue_tasks(queue)
    try:
        return _screen(raw, queue, tasks)
    except MessageError as exc:
        return Refused(_first_error(exc), *_readable(raw))
    except RefusedError as exc:
        return exc.refused
    except Exception as exc:  # a check that did not foresee this item: dropped all the same
        return Refused(f"the item cannot be read: {type(exc).__name__}", *_readable(raw))


class RefusedError(Exception):
    def __init__(self, refused: Refused) -> None:
        super().__init__(refused.reason)
        self.refused = refused


def _readable(raw: bytes | str) -> tuple[str | None, str | None]:
    """The task name and id, when the item is small enough to look for them cheaply."""
    if len(raw) > 1024 * 1024:  # kombu writes the headers after the body: look at the ends only
        ends = bytes(raw[:65536] + raw[-65536:]) if isinstance(raw, bytes) else raw[:65536] + raw[-65536:]
        text = ends.decode("utf-8", "replace") if isinstance(ends, bytes) else ends
        found = [field.search(text) for field in (_TASK_FIELD, _ID_FIELD)]
        return (found[0].group(1) if found[0] else None, found[1].group(1) if found[1] else None)
    try:
        item = json.loads(raw)
        headers = item.get("headers") if isinstance(item, dict) else None
        if not isinstance(headers, dict):
            return None, None
        task, task_id = headers.get("task"), headers.get("id")
        return (task if isinstance(task, str) else None, task_id if isinstance(task_id, str) else None)
    except Exception:
        return None, None
