"""The cloud's side of bounded storage (``oodida_core/state/quota.py``): refuse what goes past a
user's limit or Redis's ``maxmemory``, with a reply (or an ended record) naming the limit.

Nothing stored is ever removed to make room: a refused start stores only its failed record, a
refused iteration ends its assignment with the earlier iterations kept, a refused deployment
stores nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis
from celery import Celery

from oodida_core.protocol.keys import header_task_id
from oodida_core.protocol.wire import DeployRequest, Reply, Request, SubmitRequest
from oodida_core.settings import Settings
from oodida_core.state.codestore import CodeStore
from oodida_core.state.quota import Quotas, Refusal, assignment_refusal, iteration_refusal, unknown_refusal
from oodida_core.state.registry import Registry
from oodida_core.state.store import AssignmentStore

from .gate import Gate
from .outcomes import Outcome

log = logging.getLogger("oodida.cloud")


def refuse(gate: Gate, request: Request, refusal: Refusal) -> None:
    """Answer ``request`` with the refusal; the library raises QuotaError naming the limit."""
    gate.answer(request, Reply(ok=False, error="quota", message=refusal.message, value=refusal.limit))


class AssignmentLimits:
    """Running slots and result bytes of assignments."""

    def __init__(
        self,
        app: Celery,
        client: redis.Redis,
        store: AssignmentStore,
        gate: Gate,
        quotas: Quotas,
        settings: Settings,
    ) -> None:
        self.app = app
        self.redis = client  # deletes a refused iteration's answers (Celery's result keys)
        self.store = store
        self.gate = gate
        self.quotas = quotas
        self.settings = settings

    def refused_start(self, request: SubmitRequest) -> bool:
        """True when a pending assignment may not start (answered, its record ended failed); a
        redelivered start of one that runs already is never refused."""
        aid, user = request.assignment_id, request.user
        if self.store.status(aid) != "pending":
            return False
        refusal = self.quotas.memory() or self.quotas.admit_assignment(user, aid, self._holds, time.time())
        if refusal is None:
            return False
        log.warning("assignment %s of %s refused: %s", aid, user, refusal.message)
        refuse(self.gate, request, refusal)
        self.store.finish(aid, "failed", refusal.message, limit=refusal.limit)
        self.quotas.release_assignment(user, aid)
        return True

    def _holds(self, aid: str) -> bool:
        return self.store.status(aid) in ("pending", "running")

    def over(self, index: int, stored: str | None, payload: str) -> Refusal | None:
        """Whether iteration ``index``'s result (``payload``) may not be stored."""
        size = len(payload.encode())
        return iteration_refusal(index, size, self.settings.max_iteration_bytes) or assignment_refusal(
            index, int(stored or 0), size, self.settings.max_assignment_bytes
        )

    def stop(self, aid: str, user: str, index: int, clients: Sequence[int], refusal: Refusal) -> Outcome:
        """End an assignment whose iteration ``index`` went past a limit: failed, the limit
        named, the refused iteration's answers deleted; the iterations stored before stay."""
        log.warning("assignment %s of %s stopped at iteration %d: %s", aid, user, index, refusal.message)
        self.store.finish(aid, "failed", refusal.message, limit=refusal.limit)
        self.ended(user, aid)
        backend = self.app.backend
        keys = [backend.get_key_for_task(header_task_id(aid, index, cid)) for cid in clients]
        for start in range(0, len(keys), 1000):
            self.redis.delete(*keys[start : start + 1000])
        return Outcome.REFUSED

    def ended(self, user: str, aid: str) -> None:
        """Give back the running slot of an assignment that ended."""
        self.quotas.release_assignment(user, aid)

    def sent(self, clients: Sequence[int]) -> None:
        self.quotas.expire_queues(clients)


class DeploymentLimits:
    """Pending deployments and unregistered targets of on-board deployments."""

    def __init__(
        self, store: CodeStore, registry: Registry, gate: Gate, quotas: Quotas, settings: Settings
    ) -> None:
        self.store = store
        self.registry = registry
        self.gate = gate
        self.quotas = quotas
        self.settings = settings

    def refused(self, req: DeployRequest) -> bool:
        """True when the deployment may not go ahead (answered with the limit; nothing stored)."""
        refusal = self.quotas.memory()
        if refusal is None and req.role == "onboard":
            if isinstance(req.clients, tuple):
                refusal = unknown_refusal(
                    req.clients, self.registry.known(), self.settings.max_unknown_clients
                )
            if refusal is None:
                refusal = self.quotas.admit_deployment(req.user, req.deploy_id, self._pending, time.time())
        if refusal is None:
            return False
        log.warning("deployment %s of %s refused: %s", req.deploy_id, req.user, refusal.message)
        refuse(self.gate, req, refusal)
        if self.store.deployment(req.deploy_id) is not None:  # a redelivered request
            self.store.deployment_failed(req.deploy_id, refusal.message)
        return True

    def _pending(self, deploy_id: str) -> bool:
        record = self.store.deployment(deploy_id)
        if record is None or record.status in ("done", "failed"):
            return False
        return record.status == "pending" or len(record.verdicts) < len(record.targets)

    def done(self, user: str, deploy_id: str) -> None:
        """Give back the slot of a deployment that needs no client any more."""
        self.quotas.release_deployment(user, deploy_id)

    def sent(self, targets: Sequence[int]) -> None:
        self.quotas.expire_queues(targets)
