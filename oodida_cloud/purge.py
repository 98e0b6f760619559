"""Purging an ended assignment's data on request of its owner (``oodida purge ID``).

Everything an assignment leaves in Redis goes: its record, iterations and event stream
(``Keys.assignment_keys``), its entry in the owner's list and in the deadlines, and Celery's
keys for it: each on-board task's result and each iteration's chord counters. Without a purge
the same keys expire on their own (README, "Data retention").
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from oodida_core.chords import chord_group_id, chord_keys
from oodida_core.errors import MessageError
from oodida_core.guard import log_rejected
from oodida_core.store import AssignmentStore, deadline_member
from oodida_core.wire import FINAL_STATUSES, PurgeRequest, decode

from .gate import Gate
from .planning import header_task_id

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
    def __init__(self, app: Celery, store: AssignmentStore, gate: Gate) -> None:
        self.app = app
        self.store = store
        self.gate = gate

    def purge(self, message: object, task_id: str | None = None) -> str:
        try:
            request = decode(PurgeRequest, message)
        except MessageError as exc:
            log_rejected(log, "a purge", message, exc, task_id)
            return "rejected"
        aid = request.assignment_id
        if not self.gate.admit(request, f"purge of assignment {aid}"):
            return "rejected"
        record = self.store.get(aid)
        if record is None or record.user != request.user:
            log.warning("purge of %s by %r refused: no such assignment of that user", aid, request.user)
            self.gate.refuse(request, "unknown", f"no assignment {aid!r} of user {request.user!r}")
            return "unknown"
        if record.status not in FINAL_STATUSES:
            self.gate.refuse(
                request,
                "refused",
                f"assignment {aid} is {record.status}: cancel it first (oodida cancel {aid}), then purge it",
            )
            return "refused"
        indices = [it.index for it in self.store.iterations(aid)]
        # Chords were sent up to the last stored iteration and, at most, the one after it.
        count = max(indices, default=-1) + 2 if record.clients else 0
        keys = [
            *self.store.keys.assignment_keys(aid),
            *celery_keys(self.app, aid, list(record.clients), count),
        ]
        pipe = self.store.redis.pipeline()
        for start in range(0, len(keys), 1000):
            pipe.delete(*keys[start : start + 1000])
        pipe.zrem(self.store.keys.user_assignments(record.user), aid)
        pipe.zrem(self.store.keys.deadlines, *(deadline_member(aid, i) for i in range(count + 1)))
        deleted = sum(int(n) for n in pipe.execute()[: (len(keys) + 999) // 1000])
        log.info("assignment %s of %s purged: %d keys deleted", aid, record.user, deleted)
        self.gate.ok(request, {"deleted": deleted})
        return "purged"
