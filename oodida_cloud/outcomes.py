"""What a cloud handler did with a request or an iteration: one typed answer for every handler.

The values are the strings the handlers returned before they were typed: the Celery tasks
return ``outcome.value`` (a plain string), so worker logs, task events and Flower show the
same words as before.
"""

from __future__ import annotations

from enum import Enum


class Outcome(str, Enum):
    """A handler's result (``str`` and ``Enum``: ``StrEnum`` on Python 3.10)."""

    # Refused before the handler's own work: a malformed message, a bad token, another user's id.
    REJECTED = "rejected"
    # Refused by the handler: a limit, an ending the cloud does not believe, nothing to roll back.
    REFUSED = "refused"
    UNKNOWN = "unknown"  # no such assignment (of that user)
    DUPLICATE = "duplicate"  # a redelivered request, already handled
    STALE = "stale"  # an iteration finished already, or not the current one
    OK = "ok"  # answered (authenticate, versions)
    # An assignment's status, as a start or a cancel leaves it (``wire.Status``).
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STORED = "stored"  # an iteration's result stored
    REDISPATCHED = "redispatched"  # an iteration that was never sent, sent at its deadline
    SENT = "sent"  # an on-board deployment sent to its targets
    PURGED = "purged"  # an ended assignment's keys deleted

    def __str__(self) -> str:
        return self.value
