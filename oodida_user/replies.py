"""Requests to the cloud and the cloud's replies, as the library sees them.

Every request carries the user's token and a fresh random request id; the cloud answers on
the reply stream of that id (``Keys.reply``). The token never shows in task events or logs:
the message's ``argsrepr`` (what Celery logs and Flower shows) is a label built without it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis

from oodida_core.protocol.errors import AuthError, MessageError, OodidaError, QuotaError, UnknownAssignment
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import Reply, decode

MASK = "***"


def new_request_id() -> str:
    """128 random bits: nobody else can guess where the cloud will answer."""
    return uuid.uuid4().hex


def masked(message: dict[str, Any]) -> dict[str, Any]:
    """The message as monitoring may show it: the token replaced by ``***``."""
    return {k: (MASK if k == "token" and v else v) for k, v in message.items()}


def read_reply(client: redis.Redis, keys: Keys, request_id: str, block_ms: int | None) -> Reply | None:
    """The cloud's reply to ``request_id``, waiting up to ``block_ms`` (None: do not wait)."""
    reply: Any = client.xread({keys.reply(request_id): "0"}, count=1, block=block_ms)
    for _stream, entries in reply or []:
        for _entry_id, fields in entries:
            raw = fields.get(b"reply", fields.get("reply"))
            try:
                return decode(Reply, raw)
            except MessageError as exc:
                raise OodidaError(f"the cloud's reply to request {request_id} is unreadable: {exc}") from None
    return None


def await_reply(client: redis.Redis, keys: Keys, request_id: str, timeout: float) -> Reply | None:
    """The reply, or None when none came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        reply = read_reply(client, keys, request_id, max(1, int(min(left, 1.0) * 1000)) if left > 0 else None)
        if reply is not None or left <= 0:
            return reply


def raise_for(reply: Reply) -> Any:
    """The reply's value, or the error it carries: AuthError, UnknownAssignment, QuotaError
    (a limit was reached: the message names it and its value), OodidaError."""
    if reply.ok:
        return reply.value
    if reply.error == "auth":
        raise AuthError(reply.message)
    if reply.error == "unknown":
        raise UnknownAssignment(reply.message)
    if reply.error == "quota":
        raise QuotaError(reply.message, limit=str(reply.value or ""))
    raise OodidaError(reply.message or "the cloud refused the request")
