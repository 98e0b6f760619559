"""Guards for kombu's Redis transport, installed once per process by ``make_celery_app``.

**Raw items** (``envelope.py``). kombu 5.7's ``Channel._brpop_read`` (a worker's consumer) and
``Channel._get`` (``basic_get``) pop an item and parse it as kombu's envelope at once: an item
that is not one raised out of the event loop and stopped the worker ("Unrecoverable error").
Here they hand the item to ``envelope.admit`` first. An item it refuses is dropped with one
log line naming the queue and the reason; it was taken off the queue by the pop and never
reached kombu's unacked index, so it neither comes back nor stays behind. An admitted item
is delivered as the envelope ``admit`` rebuilt (our properties, the queue's own routing key).

**Remote-control payloads** (``fanout.py``). kombu 5.7's ``Channel._receive_one`` (pub/sub, the
path of the remote-control channel) handed any JSON value to ``connection._deliver``: one
PUBLISH of ``1`` stopped every worker. It hands the payload to ``fanout.screen`` first; one it
refuses is dropped with one log line naming the channel and the reason, and an exception out
of delivering an admitted one (but a broken connection) is logged instead of stopping the worker.

**A restore that cannot be read.** Restoring an unacknowledged message parses what kombu
stored in its ``unacked`` hash; an entry that does not parse is logged and removed instead of
raising out of the worker.

**Redis dying under a running worker.** When the broker connection breaks, Celery closes the
connection (transport first, which sets ``transport.client`` to None) and then closes the
consumer's channel again. Closing a channel with unacknowledged messages restores them, which
builds a new Redis pool from ``Channel._connparams``; that reads
``self.connection.client.hostname`` and raised ``AttributeError`` which stopped the worker.
``_connparams`` now raises a Redis ``ConnectionError`` in that state, which every caller
already treats as "the connection is gone": the worker reconnects when Redis is back, and the
unacknowledged messages are restored by kombu's own visibility timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from redis import exceptions as redis_errors

from oodida_core.messaging import fanout
from oodida_core.messaging.envelope import Refused, admit
from oodida_core.messaging.guard import clean
from oodida_core.protocol.errors import MessageError

log = logging.getLogger("oodida.guard")
_lock = threading.Lock()
_installed = False
TESTED_KOMBU = ("5.7.",)


def log_refused(queue: str, refused: Refused) -> None:
    """The one line a dropped item gets."""
    parts = [f"queue {clean(queue, 60)}"]
    if refused.task:
        parts.append(f"task {clean(refused.task, 80)}")
    if refused.task_id:
        parts.append(f"id {clean(refused.task_id, 80)}")
    log.warning("rejected a message (%s): %s; deleted", ", ".join(parts), clean(refused.reason, 400))


def screened(item: bytes, queue: str) -> dict[str, Any] | None:
    """The envelope to deliver for ``item`` popped off ``queue``, or None (dropped, logged)."""
    result = admit(item, queue)
    if isinstance(result, Refused):
        log_refused(queue, result)
        return None
    return result


def install() -> None:
    """Patch kombu's Redis channel once per process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        import kombu
        import redis
        from kombu.transport import redis as kombu_redis

        if not kombu.__version__.startswith(TESTED_KOMBU):  # the copies below follow kombu 5.7
            raise RuntimeError(f"kombu {kombu.__version__}: the transport guard is written for kombu 5.7")
        channel: Any = kombu_redis.Channel
        _patch_connparams(channel, redis)
        _patch_reads(channel, kombu_redis)
        _patch_receive(channel, kombu_redis)
        _patch_restore(kombu_redis.QoS, kombu_redis)
        _installed = True


def _patch_connparams(channel: Any, redis: Any) -> None:
    original = channel._connparams

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        transport = getattr(self, "connection", None)
        if transport is None or getattr(transport, "client", None) is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        return original(self, asynchronous=asynchronous)

    _connparams.__wrapped__ = original  # type: ignore[attr-defined]
    channel._connparams = _connparams


_last_warning = 0.0


def _survive(channel: Any, exc: Exception) -> None:
    """An error reply to a worker's BRPOP: log it (at most every 10 s), delete a queue key that
    is not a list (never one of ours: a queue is a list or absent), and pause a moment so that
    the next BRPOP does not spin."""
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= 10.0:
        _last_warning = now
        log.warning("the broker answered a worker's BRPOP with an error, going on: %s", clean(str(exc), 200))
    if "WRONGTYPE" in str(exc):
        try:
            with channel.conn_or_acquire() as client:
                for queue in list(getattr(channel, "_active_queues", ())):  # an instance attribute
                    for pri in channel.priority_steps:
                        key = channel._q_for_pri(queue, pri)
                        kind = client.type(key)
                        if kind not in (b"list", b"none", "list", "none"):
                            client.delete(key)
                            log.warning("queue %s was a %s, not a list: deleted (not a message)", key, kind)
        except Exception as repair:  # the repair is best effort; the pause below still holds
            log.warning("could not repair the queue keys: %s", clean(str(repair), 200))
    time.sleep(0.2)


def _patch_reads(channel: Any, kombu_redis: Any) -> None:
    """``_brpop_read`` and ``_get`` of kombu 5.7, with ``screened`` where they called ``loads``."""
    empty = kombu_redis.Empty
    bytes_to_str = kombu_redis.bytes_to_str

    def _brpop_read(self: Any, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # A broken connection: disconnect so that the next poll reconnects.
                self.client.connection.disconnect()
                raise
            except redis_errors.ResponseError as exc:
                # WRONGTYPE (a queue overwritten with a string), BUSY (a script holding Redis),
                # NOPERM: not a message and not a broken connection; the worker goes on.
                _survive(self, exc)
                raise empty() from None
            if not dest__item:
                raise empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            message = screened(item, dest)
            if message is not None:
                self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _get(self: Any, queue: str) -> Any:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    message = screened(item, queue)
                    if message is None:
                        raise empty()
                    return message
            self._maybe_update_queues_expire(client, queue)
            raise empty()

    _brpop_read.__wrapped__ = channel._brpop_read  # type: ignore[attr-defined]
    _get.__wrapped__ = channel._get  # type: ignore[attr-defined]
    channel._brpop_read = _brpop_read
    channel._get = _get


def _patch_receive(channel: Any, kombu_redis: Any) -> None:
    """``_receive_one`` of kombu 5.7, with ``fanout.screen`` where it called ``loads``."""
    bytes_to_str = kombu_redis.bytes_to_str

    def _receive_one(self: Any, c: Any) -> Any:
        try:
            response = c.parse_response()
        except self.connection_errors:
            self._in_listen = None
            raise
        if not isinstance(response, (list, tuple)):
            return None
        payload = self._handle_message(c, response)
        if not bytes_to_str(payload["type"]).endswith("message") or not payload["data"]:
            return None
        channel = bytes_to_str(payload["channel"])
        if channel[0] == "/":
            _, _, channel = channel.partition(".")
        try:
            message = fanout.screen(payload["data"])
        except MessageError as exc:
            log.warning(
                "rejected a message (channel %s): %s; deleted", clean(channel, 80), clean(str(exc), 400)
            )
            return None
        try:
            return self._deliver_fanout_message(message, channel.split("/", 1)[0])
        except self.connection_errors:
            raise
        except Exception as exc:  # a command no check foresaw: the worker goes on
            log.warning(
                "a message on channel %s failed: %s; dropped",
                clean(channel, 80),
                clean(f"{type(exc).__name__}: {exc}", 400),
            )
            return None

    _receive_one.__wrapped__ = channel._receive_one  # type: ignore[attr-defined]
    channel._receive_one = _receive_one


def _patch_restore(qos: Any, kombu_redis: Any) -> None:
    original = qos.restore_by_tag

    def restore_by_tag(self: Any, tag: Any, client: Any = None, leftmost: bool = False) -> Any:
        try:
            return original(self, tag, client, leftmost)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning(
                "dropped an unacknowledged message that cannot be restored (tag %s): %s",
                clean(tag, 80),
                clean(f"{type(exc).__name__}: {exc}", 200),
            )
            with self.channel.conn_or_acquire(client) as conn:
                conn.pipeline().hdel(self.unacked_key, tag).zrem(self.unacked_index_key, tag).execute()
            return None

    restore_by_tag.__wrapped__ = original  # type: ignore[attr-defined]
    qos.restore_by_tag = restore_by_tag
