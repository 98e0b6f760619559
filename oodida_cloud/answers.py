"""The clients' answers as the cloud reads them: from each client's own result key, which the
client's vehicle may write as it likes (acl.py), so what is there may be anything."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from oodida_core.messaging.guard import clean

log = logging.getLogger("oodida.cloud")


def result_meta(backend: Any, value: bytes | str, aid: str, client_id: int) -> Mapping[str, Any] | None:
    """The task meta Celery stored in client ``client_id``'s result key of assignment ``aid``;
    None, logged in one line, when it is not one (garbage written there by a vehicle raised out
    of finish_iteration at every deadline, and the assignment never ended: red team of issue 17)."""
    try:
        meta = backend.decode_result(value)
    except Exception as exc:  # whatever the decoder raises on whatever a vehicle wrote
        why = clean(f"{type(exc).__name__}: {exc}", 300)
        log.warning("assignment %s: dropped an undecodable answer of client %d: %s", aid, client_id, why)
        return None
    return meta if isinstance(meta, Mapping) else None
