"""Arguments of the library's calls, checked: a BadArgument for anything else."""

from __future__ import annotations

import math

from oodida_core.protocol.errors import BadArgument
from oodida_core.spec.model import MAX_CLIENT_ID

POLL_MS = 1000  # how long one blocking read of an event stream waits at most


def seconds(value: object, what: str = "timeout") -> float | None:
    """A timeout as the library uses it: None or inf for none; BadArgument for anything but a
    number (NaN included, which would never expire)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise BadArgument(f"{what} must be a number of seconds or None, not {value!r:.40}")
    return None if math.isinf(value) and value > 0 else float(value)


def finite_or_inf(value: object, what: str = "timeout") -> float:
    given = seconds(value, what)
    return math.inf if given is None else given


def client_ids(value: object) -> list[int]:
    """A list of client ids as given to rollback and code_versions, checked."""
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 0 < c <= MAX_CLIENT_ID for c in value
    ):
        raise BadArgument(f"clients must be a list of positive client ids, not {value!r:.60}")
    return list(value)
