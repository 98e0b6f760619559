"""Installing a deployment on a client: check the module can run here, then point to it.

The cloud already checked the module (syntax, the function, the allowed imports, a dry run);
what only the client can tell is whether its imports resolve on this machine and whether this
client's own allowlist admits them.
"""

from __future__ import annotations

import logging
import time

from oodida_core.customcode.check import CodePolicy, check_imports_resolve, check_source
from oodida_core.messaging.guard import clean, log_rejected
from oodida_core.protocol.errors import CustomCodeError, MessageError
from oodida_core.protocol.wire import InstallTask, Verdict, decode
from oodida_core.state.codestore import CodeStore

log = logging.getLogger("oodida.edge")


class Installer:
    def __init__(self, store: CodeStore, policy: CodePolicy, client_ids: set[int]) -> None:
        self.store = store
        self.policy = policy
        self.client_ids = client_ids

    def install(self, message: object, task_id: str | None = None) -> dict[str, object]:
        try:
            task = decode(InstallTask, message)
        except MessageError as exc:
            log_rejected(log, "an install", message, exc, task_id)
            return {"accepted": False, "reason": str(exc)}
        claimed = self.store.claim_pending(task.client_id, task.deploy_id)
        if not claimed and self.store.has_verdict(task.deploy_id, task.client_id):
            # Installed already (from the client's pending list): a later deployment may have
            # moved the pointer on since, which this stale message must not undo.
            return {"accepted": True, "reason": "installed already"}
        try:
            verdict = self._verdict(task)
        except Exception as exc:  # never leave a deployment without an answer
            log.exception("deployment %s: install on client %d failed", task.deploy_id, task.client_id)
            verdict = Verdict(
                accepted=False, reason=f"the client failed to install it: {exc}", at=time.time()
            )
        if verdict.accepted:
            self.store.point_onboard(task.user, task.client_id, task.version)
        else:
            log.warning(
                "deployment %s of %s refused on client %d: %s",
                task.deploy_id,
                task.user,
                task.client_id,
                clean(verdict.reason, 600),
            )
        self.store.record_verdict(task.deploy_id, task.client_id, verdict)
        return verdict.to_wire()

    def install_pending(self, client_id: int) -> int:
        """Install the deployments sent to ``client_id`` that it has not installed yet, oldest
        first (at start-up, before the worker takes any task). How many were installed."""
        done = 0
        for task in self.store.pending(client_id):
            if self.store.has_verdict(task.deploy_id, client_id):
                self.store.claim_pending(client_id, task.deploy_id)
                continue
            self.install(task.to_wire())
            done += 1
        if done:
            log.info("client %d: installed %d pending deployment(s)", client_id, done)
        return done

    def _verdict(self, task: InstallTask) -> Verdict:
        now = time.time()
        if task.client_id not in self.client_ids:
            return Verdict(accepted=False, reason=f"client {task.client_id} is not served here", at=now)
        found = self.store.source(task.version)
        if found is None:
            return Verdict(accepted=False, reason=f"version {task.version} is not stored", at=now)
        source, filename = found
        try:  # this client's own allowlist, and its own installed packages
            check_imports_resolve(check_source(source, filename, self.policy))
        except CustomCodeError as exc:
            return Verdict(accepted=False, reason=str(exc), at=now)
        return Verdict(accepted=True, at=now)
