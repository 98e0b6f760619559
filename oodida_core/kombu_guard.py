"""A guard for kombu's Redis transport when the Redis server dies under a running worker.

kombu 5.7: when the broker connection breaks, Celery closes the connection (transport first,
which sets ``transport.client`` to None) and then closes the consumer's channel again. Closing
a channel with unacknowledged messages restores them, which builds a new Redis pool from
``Channel._connparams``; that reads ``self.connection.client.hostname`` and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``. Celery's
``ignore_errors`` only swallows connection errors, so the AttributeError escapes and stops
the worker ("Unrecoverable error") instead of letting it reconnect.

``install()`` makes ``_connparams`` raise a Redis ``ConnectionError`` in that state, which
every caller already treats as "the connection is gone": the worker logs it, reconnects when
Redis is back, and the unacknowledged messages are restored from Redis by kombu's own
visibility timeout (they were never removed from its unacked index).
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_installed = False


def install() -> None:
    """Patch kombu's Redis channel once per process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        import redis
        from kombu.transport import redis as kombu_redis

        original = kombu_redis.Channel._connparams

        def _connparams(self: Any, asynchronous: bool = False) -> Any:
            transport = getattr(self, "connection", None)
            if transport is None or getattr(transport, "client", None) is None:
                raise redis.exceptions.ConnectionError("the broker connection is closed")
            return original(self, asynchronous=asynchronous)

        _connparams.__wrapped__ = original  # type: ignore[attr-defined]
        kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]
        _installed = True
