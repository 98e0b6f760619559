"""The live registry of clients (and cloud workers) in Redis.

A client registers once with what it offers and then beats every few seconds; a client whose
last beat is older than ``settings.live_window`` is not live. A clean shutdown removes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis

from .errors import MessageError
from .keys import Keys
from .settings import Settings
from .wire import ClientInfo, decode

# Live clients in one round trip: [last beat, info JSON or false] per client.
_LIVE = """
local seen = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES')
local out = {}
for i = 1, #seen, 2 do
  out[#out + 1] = seen[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], seen[i])
end
return out
"""


class Registry:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._live = client.register_script(_LIVE)

    # -- clients -----------------------------------------------------------------------------
    def register(self, infos: Iterable[ClientInfo]) -> None:
        infos = list(infos)
        if not infos:
            return
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.clients, mapping={str(i.client_id): i.to_json() for i in infos})
        pipe.zadd(self.keys.heartbeats, {str(i.client_id): now for i in infos})
        pipe.execute()

    def beat(self, client_ids: Iterable[int]) -> None:
        now = time.time()
        mapping = {str(c): now for c in client_ids}
        if mapping:
            self.redis.zadd(self.keys.heartbeats, mapping)

    def unregister(self, client_ids: Iterable[int]) -> None:
        ids = [str(c) for c in client_ids]
        if not ids:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.keys.clients, *ids)
        pipe.zrem(self.keys.heartbeats, *ids)
        pipe.execute()

    def live(self, now: float | None = None) -> list[ClientInfo]:
        """Live clients ordered by id, each with its last heartbeat."""
        now = time.time() if now is None else now
        flat: Any = self._live(
            keys=[self.keys.heartbeats, self.keys.clients], args=[repr(now - self.settings.live_window)]
        )
        out: list[ClientInfo] = []
        for i in range(0, len(flat), 2):
            score, data = flat[i], flat[i + 1]
            if not data:
                continue
            try:
                info = decode(ClientInfo, data)
            except MessageError:
                continue
            out.append(info.model_copy(update={"last_seen": float(score)}))
        out.sort(key=lambda i: i.client_id)
        return out

    def known(self) -> set[int]:
        """Ids of every registered client, live or not."""
        return {int(k) for k in self.redis.hkeys(self.keys.clients)}

    # -- cloud workers -----------------------------------------------------------------------
    def cloud_beat(self, worker: str) -> None:
        self.redis.zadd(self.keys.cloud_workers, {worker: time.time()})

    def cloud_leave(self, worker: str) -> None:
        self.redis.zrem(self.keys.cloud_workers, worker)

    def live_cloud_workers(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        members = self.redis.zrangebyscore(self.keys.cloud_workers, now - self.settings.live_window, "+inf")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
