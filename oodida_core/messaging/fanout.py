"""The door of the remote-control channel: a PUBLISHed payload is checked before kombu reads it.

kombu 5.7's Redis ``Channel._receive_one`` (the pub/sub path of fanout exchanges, which is how
Celery's remote control reaches every worker) parsed a payload as JSON and handed any JSON
value to ``connection._deliver``, which builds a message from ``payload['body']`` and
``payload['properties']``: ``1`` or ``[]`` raised ``TypeError`` out of the event loop and
stopped the worker, and whoever may subscribe to the channel may publish on it (a vehicle, on
Redis 6.2). ``kombu_guard`` hands every payload to ``screen`` first: what kombu delivers is a
JSON object in UTF-8 of bounded size, with a base64 string body that decodes to a JSON object
(every remote-control command is one), JSON content in UTF-8, headers that are a mapping and
properties that are one with a ``delivery_info`` mapping and a delivery tag. Anything else is
dropped with one log line naming the channel and the reason.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from oodida_core.protocol.errors import MessageError

FANOUT_LIMIT = 256 * 1024  # a remote-control command is a few hundred bytes


def _decoded_body(body: str) -> object:
    try:
        payload = base64.b64decode(body, validate=True)
        return json.loads(payload.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MessageError(f"the body does not decode: {type(exc).__name__}") from None


def screen(data: bytes | str) -> dict[str, Any]:
    """The message kombu may deliver for a PUBLISHed ``data``, or MessageError saying why not."""
    if len(data) > FANOUT_LIMIT:
        raise MessageError(f"the payload is {len(data):,} bytes; the limit is {FANOUT_LIMIT:,}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        item = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError(f"the payload is not JSON in UTF-8: {type(exc).__name__}") from None
    if not isinstance(item, dict):
        raise MessageError(f"the payload is a JSON {type(item).__name__}, not a message")
    body, properties, headers = item.get("body"), item.get("properties"), item.get("headers")
    if not isinstance(body, str):
        raise MessageError("the body is not a string")
    if item.get("content-type") != "application/json" or item.get("content-encoding") != "utf-8":
        raise MessageError("the content is not JSON in UTF-8")
    if headers is not None and not isinstance(headers, dict):
        raise MessageError("the headers are not a mapping")
    if headers and "compression" in headers:
        raise MessageError("compressed messages are not accepted")
    if not isinstance(properties, dict) or not isinstance(properties.get("delivery_info"), dict):
        raise MessageError("the properties are not a mapping with a delivery_info mapping")
    if not isinstance(properties.get("delivery_tag"), str) or properties.get("body_encoding") != "base64":
        raise MessageError("the properties have no delivery tag or a body encoding other than base64")
    decoded = _decoded_body(body)
    # a command or an event is an object; Celery batches task events (``task.multi``) in a list
    if not (
        isinstance(decoded, dict) or (isinstance(decoded, list) and all(isinstance(e, dict) for e in decoded))
    ):
        raise MessageError("the body is not a JSON object or a list of them")
    return item
