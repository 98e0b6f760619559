"""The cloud's composition root: every object of a cloud worker, built once, in one place.

``build_cloud`` takes what the process was started with (the Celery app, one Redis client,
the settings; the code policy and the sandbox when the caller made them) and builds the
stores, the registry, the gate, the limits, the orchestrator, the deployer, the purger and the
request path. No class builds its own collaborators: each gets them in its constructor.

``Cloud.routes`` is the table of every task the cloud serves: its message, what the gate logs
of it, whose assignment or deployment it names, and its handler (``requests.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import redis
from celery import Celery

from oodida_core.customcode.check import CodePolicy
from oodida_core.customcode.runner import CodeRunner
from oodida_core.customcode.sandbox import Sandbox
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.wire import (
    TASK_AUTHENTICATE,
    TASK_CANCEL,
    TASK_DEPLOY,
    TASK_FINISH_ITERATION,
    TASK_PURGE,
    TASK_ROLLBACK,
    TASK_START,
    TASK_VERSIONS,
    AssignmentRecord,
    AuthRequest,
    CancelRequest,
    DeploymentRecord,
    DeployRequest,
    FinishIteration,
    PurgeRequest,
    RollbackRequest,
    SubmitRequest,
    VersionsRequest,
)
from oodida_core.security.auth import UserStore
from oodida_core.settings import Settings
from oodida_core.state.codestore import CodeStore
from oodida_core.state.quota import Quotas
from oodida_core.state.registry import Registry
from oodida_core.state.store import AssignmentStore
from oodida_core.state.sweeps import SweepStore

from .deploy import Deployer
from .gate import Gate
from .limits import AssignmentLimits, DeploymentLimits
from .orchestrator import Orchestrator
from .outcomes import Outcome
from .purge import Purger
from .requests import Claimable, Dispatcher, Owned, Route, answers_and_keywords

A = TypeVar("A", CancelRequest, PurgeRequest)


@dataclass(frozen=True)
class Cloud:
    """Every object of one cloud worker."""

    app: Celery
    redis: redis.Redis
    settings: Settings
    keys: Keys
    store: AssignmentStore
    codestore: CodeStore
    registry: Registry
    gate: Gate
    quotas: Quotas
    policy: CodePolicy
    sandbox: Sandbox
    code: CodeRunner
    orchestrator: Orchestrator
    deployer: Deployer
    purger: Purger
    dispatcher: Dispatcher
    routes: tuple[Route, ...]


def build_cloud(
    app: Celery,
    client: redis.Redis,
    settings: Settings,
    *,
    policy: CodePolicy | None = None,
    sandbox: Sandbox | None = None,
) -> Cloud:
    """Build a cloud worker's objects once (``policy``: from the environment; ``sandbox``: one
    of ``settings.cloud_concurrency`` fork servers, when not given)."""
    keys = Keys(settings.key_prefix)
    policy = policy or CodePolicy.from_env()
    sandbox = sandbox or Sandbox(max_children=settings.cloud_concurrency)
    store = AssignmentStore(client, keys, ttl=settings.assignment_ttl)
    codestore = CodeStore(client, keys, ttl=settings.assignment_ttl)
    registry = Registry(client, settings)
    gate = Gate(client, keys, UserStore(client, keys) if settings.auth else None)
    quotas = Quotas(client, keys, settings)
    code = CodeRunner(codestore, sandbox, policy)
    orchestrator = Orchestrator(
        app,
        client,
        settings,
        store=store,
        registry=registry,
        code=code,
        gate=gate,
        limits=AssignmentLimits(app, client, store, gate, quotas, settings),
    )
    deployer = Deployer(
        app,
        codestore,
        registry,
        policy,
        sandbox,
        gate,
        DeploymentLimits(codestore, registry, gate, quotas, settings),
    )
    purger = Purger(
        app,
        store,
        client,
        keys,
        gate,
        SweepStore(client, keys, keep=settings.result_expires),
        code_time_limit=policy.time_limit,
    )
    routes = cloud_routes(store, codestore, gate, orchestrator, deployer, purger)
    return Cloud(
        app=app,
        redis=client,
        settings=settings,
        keys=keys,
        store=store,
        codestore=codestore,
        registry=registry,
        gate=gate,
        quotas=quotas,
        policy=policy,
        sandbox=sandbox,
        code=code,
        orchestrator=orchestrator,
        deployer=deployer,
        purger=purger,
        dispatcher=Dispatcher(gate),
        routes=routes,
    )


def owned_assignment(model: type[A], store: AssignmentStore) -> Owned[A, AssignmentRecord]:
    """A request on an assignment that must exist and be its user's."""
    return Owned("assignment", lambda r: r.assignment_id, lambda r: store.get(r.assignment_id), _user)


def _user(record: AssignmentRecord) -> str:
    return record.user


def _deployment_owner(record: DeploymentRecord | None) -> str | None:
    return record.user if record is not None else None


def _claimed_owner(owner: str | None) -> str | None:
    return owner


def cloud_routes(
    store: AssignmentStore,
    codestore: CodeStore,
    gate: Gate,
    orchestrator: Orchestrator,
    deployer: Deployer,
    purger: Purger,
) -> tuple[Route, ...]:
    """Every task the cloud serves, and how its messages reach their handler."""

    def finish(request: FinishIteration) -> Outcome:
        return orchestrator.finish_iteration(
            request.answers, request.assignment_id, request.iteration, request.reason
        )

    return (
        Route.claiming(
            TASK_START,
            "start",
            SubmitRequest,
            lambda r: f"start of assignment {r.assignment_id}",
            Claimable("assignment", lambda r: r.assignment_id, orchestrator.claim, _claimed_owner),
            orchestrator.start,
        ),
        Route.owned(
            TASK_CANCEL,
            "cancel",
            CancelRequest,
            lambda r: f"cancel of assignment {r.assignment_id}",
            owned_assignment(CancelRequest, store),
            orchestrator.cancel,
        ),
        Route.claiming(
            TASK_DEPLOY,
            "deploy",
            DeployRequest,
            lambda r: f"deployment {r.deploy_id} ({r.role}, {r.filename})",
            Claimable(
                "deployment",
                lambda r: r.deploy_id,
                lambda r: codestore.deployment(r.deploy_id),
                _deployment_owner,
            ),
            deployer.deploy,
        ),
        Route.plain(
            TASK_AUTHENTICATE, "authenticate", AuthRequest, lambda r: "authentication", gate.authenticated
        ),
        Route.plain(
            TASK_ROLLBACK, "rollback", RollbackRequest, lambda r: f"rollback ({r.role})", deployer.rollback
        ),
        Route.plain(TASK_VERSIONS, "versions", VersionsRequest, lambda r: "versions", deployer.versions),
        Route.owned(
            TASK_PURGE,
            "purge",
            PurgeRequest,
            lambda r: f"purge of assignment {r.assignment_id}",
            owned_assignment(PurgeRequest, store),
            purger.purge,
        ),
        Route.internal(
            TASK_FINISH_ITERATION, "finish_iteration", FinishIteration, finish, answers_and_keywords
        ),
    )
