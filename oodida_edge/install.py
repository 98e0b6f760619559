"""Installing a deployment on a client: check the module can run here, then point to it.

The cloud already checked the module (syntax, the function, the allowed imports, a dry run);
what only the client can tell is whether its imports resolve on this machine and whether this
client's own allowlist admits them.
"""

from __future__ import annotations

import importlib.util
import logging
import time

from oodida_core.customcode import CodePolicy

from oodida_core.codestore import CodeStore
from oodida_core.errors import MessageError
from oodida_core.wire import InstallTask, Verdict, decode

log = logging.getLogger("oodida.edge")


def missing_imports(imports: tuple[str, ...], policy: CodePolicy) -> list[str]:
    """Why the imports cannot be used on this client (empty: they can)."""
    problems = []
    for name in imports:
        top = name.split(".")[0]
        if top not in policy.allowed_imports:
            problems.append(f"import {name!r} is not allowed on this client")
        elif importlib.util.find_spec(top) is None:
            problems.append(f"module {top!r} is not installed on this client")
    return problems


class Installer:
    def __init__(self, store: CodeStore, policy: CodePolicy, client_ids: set[int]) -> None:
        self.store = store
        self.policy = policy
        self.client_ids = client_ids

    def install(self, message: object) -> dict[str, object]:
        try:
            task = decode(InstallTask, message)
        except MessageError as exc:
            log.warning("rejected an install message: %s", exc)
            return {"accepted": False, "reason": str(exc)}
        verdict = self._verdict(task)
        if verdict.accepted:
            self.store.point_onboard(task.user, task.client_id, task.version)
        else:
            log.warning(
                "deployment %s of %s refused on client %d: %s",
                task.deploy_id,
                task.user,
                task.client_id,
                verdict.reason,
            )
        self.store.record_verdict(task.deploy_id, task.client_id, verdict)
        return verdict.to_wire()

    def _verdict(self, task: InstallTask) -> Verdict:
        now = time.time()
        if task.client_id not in self.client_ids:
            return Verdict(accepted=False, reason=f"client {task.client_id} is not served here", at=now)
        if self.store.source(task.version) is None:
            return Verdict(accepted=False, reason=f"version {task.version} is not stored", at=now)
        problems = missing_imports(task.imports, self.policy)
        if problems:
            return Verdict(accepted=False, reason="; ".join(problems), at=now)
        return Verdict(accepted=True, at=now)
