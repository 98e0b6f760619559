"""The live registry of clients (and cloud workers) in Redis.

A client registers once with what it offers and then beats every few seconds; a client whose
last beat is older than ``settings.live_window`` is not live. A clean shutdown removes it.

Each client writes only keys of its own: its info (``Keys.client_info``) and its heartbeat
(``Keys.client_seen``, a timestamp that expires after the live window), so that a vehicle's
Redis user is granted exactly those and cannot touch another vehicle's entry. Readers find the
clients through an index of ids (``Keys.client_index``) that no vehicle writes: the operator
fills it when making a vehicle's credentials (``oodida vehicles add``); without ACLs the edges
add themselves (a vehicle's own Redis user does not try: it may not). Listing the live clients
is two round trips (the index, then one MGET of every entry and beat), with no SCAN.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

import redis

from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import ClientInfo, decode
from oodida_core.security.acl import VEHICLE_PREFIX
from oodida_core.settings import Settings
from oodida_core.state.lua import load


def _ids(values: Iterable[Any]) -> list[int]:
    out = []
    for v in values:
        text = v.decode() if isinstance(v, bytes) else str(v)
        if text.isdigit() and int(text) > 0:
            out.append(int(text))
    return sorted(set(out))


class Registry:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._beat = client.register_script(load("beat_clients"))
        self._known = client.register_script(load("known_clients"))
        user = unquote(urlsplit(settings.redis_url).username or "")
        self.writes_index = not user.startswith(f"{settings.key_prefix}-{VEHICLE_PREFIX}")

    def _ttl_ms(self) -> int:
        return max(1, int(self.settings.live_window * 1000))

    # -- clients -----------------------------------------------------------------------------
    def register(self, infos: Iterable[ClientInfo]) -> None:
        """Write each client's entry and first beat (one round trip); add the ids to the index
        unless this is a vehicle's own user, which may not (the operator did)."""
        infos = list(infos)
        if not infos:
            return
        now = repr(time.time())
        pipe = self.redis.pipeline(transaction=False)
        for info in infos:
            pipe.set(self.keys.client_info(info.client_id), info.to_json())
            pipe.set(self.keys.client_seen(info.client_id), now, px=self._ttl_ms())
        if self.writes_index:
            pipe.sadd(self.keys.client_index, *(str(i.client_id) for i in infos))
        replies = pipe.execute(raise_on_error=False)
        for n, reply in enumerate(replies):
            if isinstance(reply, Exception) and not (n == 2 * len(infos) and _refused(reply)):
                raise reply

    def beat(self, client_ids: Iterable[int]) -> list[int]:
        """One heartbeat for each client (one script call for a whole fleet); the ids
        whose entry is gone (Redis lost it: the caller registers them again)."""
        ids = list(client_ids)
        if not ids:
            return []
        names = [self.keys.client_seen(c) for c in ids] + [self.keys.client_info(c) for c in ids]
        lost: Any = self._beat(keys=names, args=[repr(time.time()), self._ttl_ms()])
        return [ids[int(n) - 1] for n in lost]

    def unregister(self, client_ids: Iterable[int]) -> None:
        """A clean leave: the clients' own entries and beats go (the index keeps the ids)."""
        ids = list(client_ids)
        if ids:
            self.redis.delete(*(k for c in ids for k in (self.keys.client_info(c), self.keys.client_seen(c))))

    def _entries(self, ids: list[int]) -> list[tuple[int, Any, Any]]:
        if not ids:
            return []
        names = [k for c in ids for k in (self.keys.client_info(c), self.keys.client_seen(c))]
        flat = self.redis.mget(names)
        return [(cid, flat[2 * n], flat[2 * n + 1]) for n, cid in enumerate(ids)]

    def indexed(self) -> list[int]:
        """Every id in the index (registered once, live or not, or only allowed)."""
        return _ids(self.redis.smembers(self.keys.client_index))

    def live(self, client_ids: Iterable[int] | None = None, now: float | None = None) -> list[ClientInfo]:
        """Live clients ordered by id, each with its last heartbeat; of ``client_ids`` only
        (without reading the index) when given."""
        now = time.time() if now is None else now
        ids = self.indexed() if client_ids is None else sorted(set(client_ids))
        oldest = now - self.settings.live_window
        out: list[ClientInfo] = []
        for _cid, data, seen in self._entries(ids):
            if not data or not seen:
                continue
            try:
                info = decode(ClientInfo, data)
                last = float(seen)
            except (MessageError, ValueError):
                continue
            if last >= oldest:
                out.append(info.model_copy(update={"last_seen": last}))
        return out

    def known(self) -> set[int]:
        """Ids of every registered client, live or not (one that left cleanly is not)."""
        head, tail = self.keys.client_info("\n").split("\n")
        return set(_ids(self._known(keys=[self.keys.client_index], args=[head, tail])))

    # -- cloud workers -----------------------------------------------------------------------
    def cloud_beat(self, worker: str) -> None:
        self.redis.zadd(self.keys.cloud_workers, {worker: time.time()})

    def cloud_leave(self, worker: str) -> None:
        self.redis.zrem(self.keys.cloud_workers, worker)

    def live_cloud_workers(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        members = self.redis.zrangebyscore(self.keys.cloud_workers, now - self.settings.live_window, "+inf")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


def _refused(exc: Exception) -> bool:
    """A NOPERM reply: this Redis user may not do that (a vehicle adding to the index)."""
    return isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in str(exc)
