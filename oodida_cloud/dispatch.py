"""Publishing one iteration's chord.

This is what ``celery.chord(header)(callback)`` does on the Redis backend (set the chord size,
publish every header task with the group id, its index and the callback), without the
``GroupResult`` that ``chord`` builds for a caller who waits: that object subscribes to the
result channel of every header task, which the cloud never reads (it learns the outcome from
the callback or from its own deadline). The header messages go out in pipelined batches.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.canvas import Signature


@dataclass(frozen=True)
class HeaderTask:
    name: str
    message: dict[str, Any]
    task_id: str
    queue: str


def publish_chord(app: Celery, header: Sequence[HeaderTask], callback: Signature) -> str:
    """Publish ``header`` as a chord whose callback is ``callback``; returns the group id."""
    group_id = uuid.uuid4().hex
    if not header:
        callback.clone(args=([],)).apply_async()
        return group_id
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
                queue=task.queue,
                group_id=group_id,
                group_index=index,
                chord=body,
                producer=producer,
                add_to_parent=False,
            )
    return group_id
