"""Publishing one iteration's chord.

This is what ``celery.chord(header)(callback)`` does on the Redis backend (set the chord size,
publish every header task with the group id, its index and the callback), without the
``GroupResult`` that ``chord`` builds for a caller who waits: that object subscribes to the
result channel of every header task, which the cloud never reads (it learns the outcome from
the callback or from its own deadline). The header messages go out in pipelined batches,
each with its ``task-sent`` event (``task_send_sent_event``) and a readable ``argsrepr``
(``oodida_core.messaging.labels``), so that Flower lists a task for an offline client as sent. Each
goes to the queue of the client its message names (``oodida_core.messaging.routing``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.canvas import Signature

from oodida_core.state.chords import DONE_SUFFIX, chord_keys


@dataclass(frozen=True)
class HeaderTask:
    name: str
    message: dict[str, Any]
    task_id: str


def publish_chord(app: Celery, group_id: str, header: Sequence[HeaderTask], callback: Signature) -> None:
    """Publish ``header`` as the chord ``group_id`` whose callback is ``callback``."""
    if not header:
        callback.clone().apply_async()
        return
    body = callback.clone()
    body.freeze(uuid.uuid4().hex, group_id=group_id)
    app.backend.set_chord_size(group_id, len(header))
    # One pipelined round trip for all header messages (kombu's publish batch), not one each.
    with app.producer_or_acquire() as producer, producer.batch(max_size=1000):
        for index, task in enumerate(header):
            app.send_task(
                task.name,
                args=(task.message,),
                task_id=task.task_id,
                group_id=group_id,
                group_index=index,
                chord=body,
                producer=producer,
                add_to_parent=False,
            )


def discard_chord(app: Celery, group_id: str) -> None:
    """Close a chord that will not complete (its iteration ended at the deadline): drop its
    counters and mark it done, as Celery does after a callback, so that a late answer is a
    no-op instead of counters that sit in Redis until ``result_expires``."""
    backend: Any = app.backend
    pipe = backend.client.pipeline()
    pipe.delete(*chord_keys(app, group_id))
    pipe.set(backend.get_key_for_group(group_id, DONE_SUFFIX), "done", ex=int(app.conf.result_expires))
    pipe.execute()
