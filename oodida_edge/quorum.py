"""The quorum of an iteration (the spec's ``min_clients``), as a client takes part in it.

An iteration with a quorum closes as soon as ``min_clients`` of its clients answered, not when
the chord completes (its callback waits for every client). So each client, once its answer is
stored and joined to the iteration's chord (the task's ``on_success``, which Celery runs after
both), reads how many answers the chord joined; when that reaches the quorum and the chord is
still open it sends ``finish_iteration`` with reason ``quorum`` to the cloud. The cloud
believes none of it (``oodida_cloud/ending.py``): it counts the answers in the clients' own
result keys. A few clients answering at once may each send one; the first closes the
iteration, the others find it closed.

A task of an iteration that was closed at its quorum before the task started (a slow client
has a backlog: the next iteration was sent to it too) is answered ``skipped`` without reading
(``closed``: the cloud's marker ``Keys.iteration_closed``, never the chord's state, which any
vehicle may write); a task that was already running when the quorum closed answers as usual, and the
cloud keeps that late answer out (the iteration lists the client as ``late``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from celery import Celery

from oodida_core.messaging.labels import finish_labels
from oodida_core.protocol.keys import CLOUD_QUEUE, Keys
from oodida_core.protocol.wire import TASK_FINISH_ITERATION
from oodida_core.state.chords import progress

log = logging.getLogger("oodida.edge")

COUNTED = ("ok", "failed")  # a ``skipped`` answer is no answer to the quorum


def quorum_of(message: object) -> int | None:
    """The quorum an on-board task message names (None: none, or not a positive integer)."""
    value = message.get("quorum") if isinstance(message, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def reached(count: int, closed: bool, quorum: int) -> bool:
    """Whether a client that just answered should announce the quorum."""
    return not closed and count >= quorum


class QuorumWatch:
    """The chord state of quorum iterations, read with the edge's own (writer) connection: the
    vehicle's credentials allow the chord counters (``celery-taskset-meta-*``) and pushing
    onto ``cloud``, as its chord callbacks do. Whether the cloud closed an iteration at its
    quorum is read from the cloud's own marker (``Keys.iteration_closed``) through ``reader``:
    every vehicle may write the chord's state, so a task skipped on that would be skipped on
    any vehicle's word."""

    def __init__(self, app: Celery, reader: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.app = app
        self.reader = reader
        self.keys = keys or Keys()

    @property
    def client(self) -> redis.Redis:
        client: redis.Redis = self.app.backend.client
        return client

    def closed(self, assignment_id: str, iteration: int) -> bool:
        """Whether the cloud closed the iteration at its quorum (its marker, which only the
        cloud writes; never the chord's done marker, which any vehicle may forge)."""
        reader = self.reader if self.reader is not None else self.client
        try:
            return reader.get(self.keys.iteration_closed(assignment_id, iteration)) is not None
        except redis.exceptions.RedisError as exc:  # the task runs; the cloud keeps it out if late
            log.warning(
                "assignment %s iteration %d: chord state unreadable: %s", assignment_id, iteration, exc
            )
            return False

    def answered(self, answer: Mapping[str, Any], quorum: int) -> bool:
        """After ``answer`` was stored and joined: announce the quorum if it is reached now.
        Whether a ``finish_iteration`` was sent."""
        aid, index = answer.get("assignment_id"), answer.get("iteration")
        if answer.get("status") not in COUNTED or not isinstance(aid, str) or not isinstance(index, int):
            return False
        try:
            count, closed = progress(self.app, self.client, aid, index)
        except redis.exceptions.RedisError as exc:  # the chord's callback or the deadline ends it
            log.warning("assignment %s iteration %d: quorum not checked: %s", aid, index, exc)
            return False
        if not reached(count, closed, quorum):
            return False
        self._finish(aid, index, "quorum")
        log.info("assignment %s iteration %d: quorum of %d reached (%d answered)", aid, index, quorum, count)
        return True

    def buffered(self, answer: Mapping[str, Any]) -> bool:
        """After ``answer`` of an asynchronous aggregation (the spec's buffer) was stored: tell
        the cloud, which aggregates once the buffer is full (``oodida_cloud/buffered.py``; a
        task there has no chord). Whether a ``finish_iteration`` was sent."""
        aid, index = answer.get("assignment_id"), answer.get("iteration")
        if answer.get("status") not in COUNTED or not isinstance(aid, str) or not isinstance(index, int):
            return False
        self._finish(aid, index, "buffer")
        return True

    def _finish(self, aid: str, index: int, reason: str) -> None:
        argsrepr, kwargsrepr = finish_labels(aid, index, reason=reason)
        self.app.send_task(
            TASK_FINISH_ITERATION,
            args=(None,),
            kwargs={"assignment_id": aid, "iteration": index, "reason": reason},
            queue=CLOUD_QUEUE,
            argsrepr=argsrepr,
            kwargsrepr=kwargsrepr,
            ignore_result=True,
        )
