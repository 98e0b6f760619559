"""The clients' answers as the cloud reads them: from each client's own result key, which the
client's vehicle may write as it likes (acl.py), so what is there may be anything."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import redis

from oodida_core.messaging.guard import clean
from oodida_core.protocol.keys import header_task_id

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


def stored_answers(
    backend: Any, client: redis.Redis, aid: str, wanted: Sequence[tuple[int, int]]
) -> list[dict[str, Any]]:
    """The answers stored so far to ``wanted`` ((client id, iteration) pairs of assignment
    ``aid``), read straight from the result backend: each from the result key of that client's
    own task, and only if it speaks for that client and iteration."""
    answers: list[dict[str, Any]] = []
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        keys = [backend.get_key_for_task(header_task_id(aid, index, cid)) for cid, index in chunk]
        for (cid, index), value in zip(chunk, client.mget(keys), strict=True):
            if value is None:
                continue
            meta = result_meta(backend, value, aid, cid)
            if meta is None:
                continue
            answer = meta.get("result")
            if meta.get("status") == "SUCCESS" and speaks_for(answer, aid, index, cid):
                answers.append(answer)
    return answers


def speaks_for(answer: object, aid: str, index: int, client_id: int) -> TypeGuard[dict[str, Any]]:
    """Whether an answer read from client ``client_id``'s result key is that client's answer
    to iteration ``index`` of ``aid`` (a vehicle writes only its own result keys; what it
    writes there must not speak for another client or another iteration)."""
    return (
        isinstance(answer, dict)
        and answer.get("client_id") == client_id
        and answer.get("assignment_id") == aid
        and answer.get("iteration") == index
    )
