"""Whether a ``finish_iteration`` message may end an iteration now.

Anyone who may push onto ``cloud`` (an analyst, a vehicle's chord callback) can send a
well-formed ``oodida.cloud.finish_iteration`` naming any assignment and iteration, and the reason
it claims. The cloud believes none of it: it ends an iteration

- as ``complete`` only when every selected client of that iteration has answered (its own
  result key holds an answer that speaks for it: what the real chord callback finds);
- at its ``deadline`` only once the iteration's deadline has passed (the deadline the cloud
  stored: the iteration's start plus the spec's timeout);
- as ``cancel`` only when the assignment was cancelled (the cloud's own cancel does that first);
- at its ``quorum`` only when the spec sets ``min_clients`` and at least that many selected
  clients have answered (a client sends it once its answer made the count; ``skipped`` answers
  do not count, and each client counts once however often its task was delivered).

Otherwise the message is logged in one line and does nothing: the real callback or deadline
will come. Once an assignment is cancelled, any reason may close its current iteration.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping

# The cloud stores an iteration's start a few microseconds after it computed its deadline; a
# real deadline that arrives within this much before the stored start plus timeout is waited out.
SETTLE = 1.0


def iteration_deadline(raw: Mapping[str, str], timeout: float) -> float:
    """The current iteration's deadline, from the assignment's stored record."""
    try:
        started = float(raw.get("current_started") or "nan")
    except ValueError:
        started = float("nan")
    return started + timeout if started == started else float("inf")


def refusal(
    reason: str,
    status: str | None,
    clients: Collection[int],
    answered: Collection[int],
    deadline: float,
    quorum: int | None = None,
) -> str | None:
    """Why ending the current iteration for ``reason`` is refused now (None: it may end).
    A ``deadline`` just short of ``deadline`` (``SETTLE``) is waited out here. ``quorum`` is
    the spec's min_clients (None: not set); ``answered`` holds the clients that answered."""
    if status == "cancelled":
        return None
    if reason == "cancel":
        return "the assignment was not cancelled"
    if reason == "complete":
        missing = set(clients) - set(answered)
        if missing:
            return f"{len(missing)} of its {len(set(clients))} clients have not answered"
        return None
    if reason == "deadline":
        early = deadline - time.time()
        if 0 < early <= SETTLE:
            time.sleep(early)
        elif early > 0:
            return f"its deadline is {early:.1f} s away"
        return None
    if reason == "quorum":
        if quorum is None:
            return "its assignment sets no min_clients"
        count = len(set(answered) & set(clients))
        if count < quorum:
            return f"only {count} of its min_clients {quorum} have answered"
        return None
    return f"unknown reason {reason!r}"
