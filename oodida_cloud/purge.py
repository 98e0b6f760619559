"""Purging an ended assignment's data on request of its owner (``oodida purge ID``).

Everything an assignment leaves in Redis goes: its record, iterations and event stream
(``Keys.assignment_keys``), its entry in the owner's list and in the deadlines, and Celery's
keys for it: each on-board task's result and each iteration's chord counters. Without a purge
the same keys expire on their own (README, "Data retention").
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery

from oodida_core.protocol.keys import Keys, chord_group_id, deadline_member, header_task_id
from oodida_core.protocol.wire import FINAL_STATUSES, AssignmentRecord, PurgeRequest
from oodida_core.state.chords import chord_keys
from oodida_core.state.store import AssignmentStore

from .gate import Gate
from .outcomes import Outcome

log = logging.getLogger("oodida.cloud")


def celery_keys(app: Celery, assignment_id: str, clients: list[int], iterations: int) -> list[str]:
    """Celery's result and chord keys of an assignment's first ``iterations`` iterations."""
    backend: Any = app.backend
    keys: list[str] = []
    for index in range(iterations):
        keys += chord_keys(app, chord_group_id(assignment_id, index), done=True)
        results = [backend.get_key_for_task(header_task_id(assignment_id, index, c)) for c in clients]
        keys += [k.decode() if isinstance(k, bytes) else k for k in results]
    return keys


class Purger:
    """Deletes an ended assignment's keys: through its own Redis client and key names, given
    explicitly (the store has no bulk delete of Celery's keys)."""

    def __init__(
        self, app: Celery, store: AssignmentStore, client: redis.Redis, keys: Keys, gate: Gate
    ) -> None:
        self.app = app
        self.store = store
        self.redis = client
        self.keys = keys
        self.gate = gate

    def purge(self, request: PurgeRequest, record: AssignmentRecord) -> Outcome:
        """Purge the user's assignment ``record`` (requests.py checked it is theirs) if it ended."""
        aid = record.id
        if record.status not in FINAL_STATUSES:
            self.gate.refuse(
                request,
                "refused",
                f"assignment {aid} is {record.status}: cancel it first (oodida cancel {aid}), then purge it",
            )
            return Outcome.REFUSED
        indices = [it.index for it in self.store.iterations(aid)]
        # Chords were sent up to the last stored iteration and, at most, the one after it.
        count = max(indices, default=-1) + 2 if record.clients else 0
        keys = [
            *self.keys.assignment_keys(aid),
            *celery_keys(self.app, aid, list(record.clients), count),
        ]
        pipe = self.redis.pipeline()
        for start in range(0, len(keys), 1000):
            pipe.delete(*keys[start : start + 1000])
        pipe.zrem(self.keys.user_assignments(record.user), aid)
        pipe.zrem(self.keys.deadlines, *(deadline_member(aid, i) for i in range(count + 1)))
        deleted = sum(int(n) for n in pipe.execute()[: (len(keys) + 999) // 1000])
        log.info("assignment %s of %s purged: %d keys deleted", aid, record.user, deleted)
        self.gate.ok(request, {"deleted": deleted})
        return Outcome.PURGED
