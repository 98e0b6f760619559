"""Custom code in Redis: sources by version, per-user pointers with history, deployments.

A source is stored once under its version (``sha256:`` of the text). Each user has one
off-board pointer and one on-board pointer per client; a pointer is a short list of versions,
newest first, so the head is what runs and a rollback pops it. Users never share pointers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis

from oodida_core.protocol.errors import MessageError, OodidaError
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.text import storable
from oodida_core.protocol.wire import DeploymentRecord, InstallTask, PendingInstall, Verdict, decode
from oodida_core.state.lua import load

HISTORY = 10  # versions kept per pointer
WITHDRAWN = "withdrawn by a rollback before this client installed it"


def _s(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class CodeStore:
    def __init__(
        self, client: redis.Redis, keys: Keys, ttl: int = 7 * 86400, reader: redis.Redis | None = None
    ) -> None:
        self.redis = client
        self.reader = reader or client  # sources are only read here (a read-only ACL user)
        self.keys = keys
        self.ttl = ttl
        self._point = client.register_script(load("point_offboard"))
        self._rollback = client.register_script(load("rollback_pointer"))
        self._verdict = client.register_script(load("record_verdict"))
        self._point_onboard = client.register_script(load("point_onboard"))

    # -- sources -----------------------------------------------------------------------------
    def put_source(self, version: str, source: str, filename: str) -> None:
        self.redis.hset(self.keys.code(version), mapping={"source": source, "filename": filename})

    def source(self, version: str) -> tuple[str, str] | None:
        """(source, filename) of a version, or None."""
        source, filename = self.reader.hmget(self.keys.code(version), ["source", "filename"])
        if source is None:
            return None
        return _s(source), _s(filename) or "custom.py"

    # -- pointers ----------------------------------------------------------------------------
    def point_onboard(self, user: str, client_id: int, version: str) -> None:
        """Make ``version`` current on ``client_id`` (the client, once it installed it)."""
        self._point_onboard(keys=[self.keys.onboard_pointer(user, client_id)], args=[version, HISTORY])

    def point_offboard(self, user: str, version: str) -> None:
        keys = [self.keys.offboard_pointer(user), self.keys.deployed_at(user)]
        self._point(keys=keys, args=[version, repr(time.time()), HISTORY])

    def onboard_version(self, user: str, client_id: int) -> str | None:
        return _s(self.redis.lindex(self.keys.onboard_pointer(user, client_id), 0))

    def onboard_versions(self, user: str, clients: Iterable[int]) -> dict[int, str | None]:
        ids = list(clients)
        pipe = self.redis.pipeline(transaction=False)
        for cid in ids:
            pipe.lindex(self.keys.onboard_pointer(user, cid), 0)
        return {cid: _s(v) for cid, v in zip(ids, pipe.execute(), strict=True)}

    def offboard_version(self, user: str) -> str | None:
        return _s(self.redis.lindex(self.keys.offboard_pointer(user), 0))

    def history(self, user: str, client_id: int | None = None) -> list[str]:
        """A pointer's versions, newest first (client None: the off-board pointer)."""
        key = (
            self.keys.offboard_pointer(user)
            if client_id is None
            else self.keys.onboard_pointer(user, client_id)
        )
        return [_s(v) for v in self.redis.lrange(key, 0, -1)]

    def deployed_at(self, user: str) -> dict[str, float]:
        raw = self.redis.hgetall(self.keys.deployed_at(user))
        return {_s(k): float(v) for k, v in raw.items()}

    def rollback_onboard(self, user: str, clients: Iterable[int]) -> dict[int, str | None]:
        """Drop the current version on each client; {client: version now current (or None)}.
        A client without any version is refused with OodidaError."""
        ids = list(clients)
        empty = [c for c in ids if not self.redis.exists(self.keys.onboard_pointer(user, c))]
        if empty:
            raise OodidaError(f"nothing to roll back on clients {empty}: no on-board code of {user!r} there")
        out: dict[int, str | None] = {}
        for cid in ids:
            _ok, now = self._rollback(keys=[self.keys.onboard_pointer(user, cid)])
            out[cid] = _s(now)
        return out

    def undo_install(self, user: str, deploy_id: str, version: str, client_id: int) -> tuple[str, str | None]:
        """Undo one on-board deployment on one client (a canary's roll back): ``("rolled back",
        now)`` when the client installed it and it is still current (the pointer's head popped:
        the version before, or none if it had none); ``("withdrawn", now)`` when the client has
        not installed it yet (offline): its pending install is dropped and a refusing verdict
        recorded, so neither the pending list nor the install message still queued for it
        installs it when it comes back; ``("untouched", now)`` otherwise (refused, or a later
        deployment is current). One transaction against the client's own install."""
        pointer = self.keys.onboard_pointer(user, client_id)
        verdict_key = self.keys.deployment_verdict(deploy_id, client_id)
        pending = self.keys.pending_installs(client_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(pointer, verdict_key, pending)
                    raw = pipe.get(verdict_key)
                    head = _s(pipe.lindex(pointer, 0))
                    if raw is None:
                        withdrawn = Verdict(accepted=False, reason=WITHDRAWN, at=time.time())
                        pipe.multi()
                        pipe.hdel(pending, deploy_id)
                        pipe.set(verdict_key, withdrawn.to_json(), ex=self.ttl)
                        pipe.xadd(self.keys.deployment_events(deploy_id), {"type": "verdict"})
                        pipe.execute()
                        return "withdrawn", head
                    try:
                        accepted = decode(Verdict, _s(raw)).accepted
                    except MessageError:
                        accepted = False
                    if not (accepted and head == version):
                        pipe.unwatch()
                        return "untouched", head
                    pipe.multi()
                    pipe.lpop(pointer)
                    pipe.lindex(pointer, 0)
                    now = pipe.execute()[1]
                    return "rolled back", _s(now)
                except redis.WatchError:
                    continue

    def rollback_offboard(self, user: str) -> str | None:
        ok, now = self._rollback(keys=[self.keys.offboard_pointer(user)])
        if not ok:
            raise OodidaError(f"nothing to roll back: {user!r} has no off-board code")
        return _s(now)

    # -- deployments -------------------------------------------------------------------------
    def create_deployment(self, deploy_id: str, user: str, role: str, filename: str) -> None:
        key = self.keys.deployment(deploy_id)
        pipe = self.redis.pipeline()
        pipe.hset(
            key,
            mapping={
                "user": user,
                "role": role,
                "filename": filename,
                "status": "pending",
                "created_at": repr(time.time()),
            },
        )
        pipe.expire(key, self.ttl)
        pipe.execute()

    def deployment_sent(self, deploy_id: str, version: str, targets: list[int], status: str = "sent") -> None:
        key = self.keys.deployment(deploy_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"version": version, "targets": json.dumps(targets), "status": status})
        pipe.xadd(self.keys.deployment_events(deploy_id), {"type": "sent"})
        pipe.expire(self.keys.deployment_events(deploy_id), self.ttl)
        pipe.execute()

    def deployment_failed(self, deploy_id: str, error: str) -> None:
        key = self.keys.deployment(deploy_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"status": "failed", "error": storable(error)})  # the module's own text
        pipe.xadd(self.keys.deployment_events(deploy_id), {"type": "failed"})
        pipe.expire(self.keys.deployment_events(deploy_id), self.ttl)
        pipe.execute()

    def record_verdict(self, deploy_id: str, client_id: int, verdict: Verdict) -> None:
        keys = [self.keys.deployment_verdict(deploy_id, client_id), self.keys.deployment_events(deploy_id)]
        self._verdict(keys=keys, args=[verdict.to_json(), client_id, self.ttl])

    # -- deployments waiting for their clients ------------------------------------------------
    def add_pending(self, tasks: list[InstallTask]) -> None:
        """Record install tasks as pending on their clients (before they are sent), and the time
        of the deployment of their version (the vote's tie-break)."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for user, version in {(t.user, t.version) for t in tasks}:
            pipe.hset(self.keys.deployed_at(user), version, repr(now))
        for task in tasks:
            key = self.keys.pending_installs(task.client_id)
            pipe.hset(key, task.deploy_id, PendingInstall(task=task, sent_at=now).to_json())
            pipe.expire(key, self.ttl)
        pipe.execute()

    def pending(self, client_id: int) -> list[InstallTask]:
        """A client's pending install tasks, oldest first (a malformed entry is dropped)."""
        raw = self.redis.hgetall(self.keys.pending_installs(client_id))
        out: list[PendingInstall] = []
        for deploy_id, value in raw.items():
            try:
                out.append(decode(PendingInstall, value))
            except MessageError:
                self.redis.hdel(self.keys.pending_installs(client_id), deploy_id)
        return [p.task for p in sorted(out, key=lambda p: (p.sent_at, p.task.deploy_id))]

    def claim_pending(self, client_id: int, deploy_id: str) -> bool:
        """Take a pending install off the client's list: True for the one caller that did."""
        return bool(self.redis.hdel(self.keys.pending_installs(client_id), deploy_id))

    def has_verdict(self, deploy_id: str, client_id: int) -> bool:
        return bool(self.redis.exists(self.keys.deployment_verdict(deploy_id, client_id)))

    def deployment(self, deploy_id: str) -> DeploymentRecord | None:
        raw = self.redis.hgetall(self.keys.deployment(deploy_id))
        if not raw:
            return None
        rec = {_s(k): _s(v) for k, v in raw.items()}
        targets = json.loads(rec["targets"]) if rec.get("targets") else []
        found = (
            self.redis.mget([self.keys.deployment_verdict(deploy_id, c) for c in targets]) if targets else []
        )
        verdicts = {c: v for c, v in zip(targets, found, strict=True) if v is not None}
        return decode(
            DeploymentRecord,
            {
                "id": deploy_id,
                "user": rec.get("user", ""),
                "role": rec.get("role", "onboard"),
                "filename": rec.get("filename", ""),
                "version": rec.get("version", ""),
                "status": rec.get("status", "pending"),
                "targets": targets,
                "verdicts": {int(k): json.loads(_s(v)) for k, v in verdicts.items()},
                "error": rec.get("error") or None,
                "created_at": float(rec.get("created_at") or 0.0),
            },
        )

    def read_events(self, deploy_id: str, after: str, block_ms: int) -> list[str]:
        """Entry ids of new deployment events (their content is in the record)."""
        reply: Any = self.redis.xread({self.keys.deployment_events(deploy_id): after}, block=block_ms)
        return [_s(entry_id) for _stream, entries in reply or [] for entry_id, _ in entries]
