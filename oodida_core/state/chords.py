"""An iteration's chord, as every role names it, and how many clients answered it so far.

The count is read from Celery's own chord state in the result backend: every header task
that returns records its result in the chord's join key (``<group key>.j``, a sorted set, or
a list when ``result_chord_ordered`` is off), once per task even when a task is redelivered.
That costs the clients nothing extra: the answer they send anyway is what is counted. The
join key is deleted when the chord completes (or is closed at its deadline), and the chord is
then marked ``done`` under ``<group key>.c``.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery

from oodida_core.protocol.keys import chord_group_id

COUNTER_SUFFIXES = ("", ".j", ".t", ".s", ".d")  # the chord's state while it runs
DONE_SUFFIX = ".c"  # set when it completed or was closed


def chord_keys(app: Celery, group_id: str, *, done: bool = False) -> list[str]:
    """The result backend's keys of chord ``group_id``: its counters, and with ``done`` also
    its done marker."""
    backend: Any = app.backend
    suffixes = (*COUNTER_SUFFIXES, DONE_SUFFIX) if done else COUNTER_SUFFIXES
    keys = [backend.get_key_for_group(group_id, suffix) for suffix in suffixes]
    return [k.decode() if isinstance(k, bytes) else k for k in keys]


def answered(app: Celery, client: redis.Redis, assignment_id: str, iteration: int) -> int | None:
    """How many clients answered iteration ``iteration`` so far (failed answers included);
    None once its chord was completed or closed (the iteration is being stored)."""
    count, closed = progress(app, client, assignment_id, iteration)
    return None if closed and not count else count


def progress(app: Celery, client: redis.Redis, assignment_id: str, iteration: int) -> tuple[int, bool]:
    """How many answers iteration ``iteration``'s chord joined so far, and whether it was closed
    (completed, or closed at its deadline or quorum: an answer joining after that is not
    counted for anything)."""
    backend: Any = app.backend
    group = chord_group_id(assignment_id, iteration)
    join_key = backend.get_key_for_group(group, ".j")
    pipe = client.pipeline(transaction=False)
    if bool(getattr(backend, "_chord_zset", True)):
        pipe.zcard(join_key)
    else:
        pipe.llen(join_key)
    pipe.get(backend.get_key_for_group(group, DONE_SUFFIX))
    count, closed = pipe.execute()
    return int(count or 0), closed in (b"done", "done")
