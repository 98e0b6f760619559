"""Deployments, the cloud's part: check the module again, store it, send it to its targets.

The library checked the module already; the cloud does not trust that. An off-board module
takes effect here at once. An on-board module goes to each target client as an install task
on its own queue; each client answers with its verdict. A client that is offline finds the
deployment on its list of pending installs when it starts, and installs it before any task.
"""

from __future__ import annotations

import logging
import random
import time

from celery import Celery

from oodida_core.customcode.check import CodePolicy, check_source
from oodida_core.customcode.sandbox import Sandbox, dry_run
from oodida_core.protocol.errors import CustomCodeError, OodidaError, SpecError
from oodida_core.protocol.keys import install_task_id
from oodida_core.protocol.tags import TagFilter
from oodida_core.protocol.text import one_line, storable
from oodida_core.protocol.wire import (
    TASK_INSTALL,
    ClientInfo,
    DeploymentRecord,
    DeployRequest,
    InstallTask,
    RollbackRequest,
    VersionsRequest,
)
from oodida_core.spec.model import validate_spec
from oodida_core.spec.tags import select_tagged
from oodida_core.state.codestore import CodeStore
from oodida_core.state.registry import Registry

from .gate import Gate
from .limits import DeploymentLimits
from .outcomes import Outcome

log = logging.getLogger("oodida.cloud")


def deploy_targets(wanted: str | tuple[int, ...] | int | TagFilter, live: list[int], seed: str) -> list[int]:
    """``all``: every live client; a list: exactly those (offline ones get it when back);
    ``k``: k live clients picked reproducibly at random, or all of them if fewer. (A tag
    filter is resolved against the live clients' tags: ``Deployer._tagged``.)"""
    if wanted == "all":
        return sorted(live)
    if isinstance(wanted, int):
        return (
            sorted(live) if wanted >= len(live) else sorted(random.Random(seed).sample(sorted(live), wanted))
        )
    return sorted(set(wanted)) if isinstance(wanted, tuple) else []


class Deployer:
    def __init__(
        self,
        app: Celery,
        store: CodeStore,
        registry: Registry,
        policy: CodePolicy,
        sandbox: Sandbox,
        gate: Gate,
        limits: DeploymentLimits,
    ) -> None:
        self.app = app
        self.gate = gate
        self.store = store
        self.registry = registry
        self.policy = policy
        self.sandbox = sandbox
        self.limits = limits

    def deploy(self, req: DeployRequest, record: DeploymentRecord | None) -> Outcome:
        """Deploy a decoded, authenticated request; ``record``: its deployment so far, the
        user's or none (requests.py refused another user's)."""
        try:  # the library's rule for file names (no control characters, valid Unicode, .py)
            validate_spec({"mode": f"deploy_{req.role}", "filename": req.filename})
        except SpecError as exc:
            log.warning("deployment %s of %s refused: %s", req.deploy_id, req.user, one_line(str(exc), 600))
            self.gate.refuse(req, "refused", str(exc))
            return Outcome.REJECTED
        if (record is None or record.status == "pending") and self._no_tagged_target(req):
            return Outcome.REJECTED  # a tag filter that no live client matches
        if (record is None or record.status == "pending") and self.limits.refused(req):
            return Outcome.REJECTED  # past a limit of the user's or Redis's maxmemory
        if record is None:
            self.store.create_deployment(req.deploy_id, req.user, req.role, req.filename)
        elif record.status != "pending":
            self.gate.ok(req)
            return Outcome.DUPLICATE
        self.gate.ok(req)  # the library follows the deployment's record from here
        try:
            checked = check_source(req.source, req.filename, self.policy)
            dry_run(checked, req.role, self.policy, self.sandbox)
        except CustomCodeError as exc:
            # The dry run's error is the module's own text (an exception message): it may hold
            # lone surrogates and terminal escapes.
            error = storable(str(exc))
            log.warning(
                "deployment %s of %s (%s) refused in the cloud: %s",
                req.deploy_id,
                req.user,
                one_line(req.filename),
                one_line(error, 600),
            )
            self.store.deployment_failed(req.deploy_id, error)
            self.limits.done(req.user, req.deploy_id)
            return Outcome.FAILED
        self.store.put_source(checked.version, req.source, req.filename)
        if req.role == "offboard":
            self.store.point_offboard(req.user, checked.version)
            self.store.deployment_sent(req.deploy_id, checked.version, [], status="done")
            log.info("off-board code of %s is now %s", req.user, checked.version)
            return Outcome.DONE
        infos = self.registry.live()
        if isinstance(req.clients, TagFilter):
            targets = self._tagged(req.clients, infos, req.deploy_id)
        else:
            targets = deploy_targets(req.clients, [c.client_id for c in infos], req.deploy_id)
        self.store.deployment_sent(req.deploy_id, checked.version, targets)
        tasks = [
            InstallTask(
                deploy_id=req.deploy_id,
                user=req.user,
                client_id=cid,
                version=checked.version,
                filename=req.filename,
            )
            for cid in targets
        ]
        # Pending on each client until it installed it: an offline client installs it when it
        # starts, before any task, whatever waits ahead of the install in its queue.
        self.store.add_pending(tasks)
        with self.app.producer_or_acquire() as producer, producer.batch(max_size=1000):
            for task in tasks:
                cid = task.client_id
                message = task.to_wire()
                self.app.send_task(
                    TASK_INSTALL,
                    args=(message,),
                    task_id=install_task_id(req.deploy_id, cid),
                    ignore_result=True,
                    producer=producer,
                )
        self.limits.sent(targets)  # a target that never comes back leaves nothing for ever
        log.info(
            "deployment %s of %s: %s to %d clients at %.3f",
            req.deploy_id,
            req.user,
            checked.version,
            len(targets),
            time.time(),
        )
        return Outcome.SENT

    def _no_tagged_target(self, req: DeployRequest) -> bool:
        """True (and the request refused, saying which tags are live) when ``clients`` is a tag
        filter that no live client matches."""
        if req.role != "onboard" or not isinstance(req.clients, TagFilter):
            return False
        try:
            select_tagged(req.clients, self.registry.live(), req.deploy_id)
        except SpecError as exc:
            log.warning("deployment %s of %s refused: %s", req.deploy_id, req.user, one_line(str(exc), 600))
            self.gate.refuse(req, "refused", str(exc))
            return True
        return False

    @staticmethod
    def _tagged(wanted: TagFilter, live: list[ClientInfo], seed: str) -> list[int]:
        """The live clients a tag filter chooses (none if they all left since it was checked)."""
        try:
            return select_tagged(wanted, live, seed)
        except SpecError:
            return []

    # -- the user's code pointers ------------------------------------------------------------
    def rollback(self, req: RollbackRequest) -> Outcome:
        """Restore the requesting user's previous version; only ever that user's pointers."""
        try:
            if req.role == "offboard":
                value: object = self.store.rollback_offboard(req.user)
            elif req.deploy_id is not None:
                value = self._undo(req, req.deploy_id)
            else:
                value = {str(c): v for c, v in self.store.rollback_onboard(req.user, req.clients).items()}
        except OodidaError as exc:
            self.gate.refuse(req, "refused", str(exc))
            return Outcome.REFUSED
        log.info("rollback of %s's %s code: now %s", req.user, req.role, value)
        self.gate.ok(req, value)
        return Outcome.DONE

    def _undo(self, req: RollbackRequest, deploy_id: str) -> dict[str, object]:
        """Undo the user's own on-board deployment ``deploy_id`` on some of its targets:
        {client: {"action": rolled back / withdrawn / untouched, "version": now current}}."""
        record = self.store.deployment(deploy_id)
        if record is None or record.user != req.user or record.role != "onboard" or not record.version:
            raise OodidaError(f"no on-board deployment {deploy_id!r} of user {req.user!r} to undo")
        strangers = sorted(set(req.clients) - set(record.targets))
        if strangers:
            raise OodidaError(f"deployment {deploy_id} was not sent to clients {strangers}: nothing to undo")
        out: dict[str, object] = {}
        for cid in req.clients:
            action, now = self.store.undo_install(req.user, deploy_id, record.version, cid)
            out[str(cid)] = {"action": action, "version": now}
        return out

    def versions(self, req: VersionsRequest) -> Outcome:
        """The requesting user's current versions: off-board, and on the clients asked for."""
        onboard = self.store.onboard_versions(req.user, req.clients)
        self.gate.ok(
            req,
            {
                "offboard": self.store.offboard_version(req.user),
                "onboard": {str(c): v for c, v in onboard.items()},
            },
        )
        return Outcome.OK
