"""The analyst's library: submit assignments, follow them, read results, list clients."""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Mapping
from types import TracebackType
from typing import Any, overload

import redis
from celery import Celery

from oodida_core.customcode.check import CodePolicy
from oodida_core.protocol.errors import BadArgument, SpecError, SpecIssue, UnknownAssignment
from oodida_core.protocol.keys import Keys, request_task_id
from oodida_core.protocol.tags import TagFilter
from oodida_core.protocol.wire import (
    TASK_AUTHENTICATE,
    TASK_DEPLOY,
    TASK_PURGE,
    TASK_ROLLBACK,
    TASK_START,
    TASK_VERSIONS,
    AuthRequest,
    ClientInfo,
    DeployRequest,
    PurgeRequest,
    Request,
    Role,
    RollbackRequest,
    SubmitRequest,
    VersionsRequest,
)
from oodida_core.settings import Settings
from oodida_core.spec.model import AssignmentSpec, DeploySpec, spec_to_wire, validate_spec
from oodida_core.spec.tags import filter_of, select_tagged
from oodida_core.state.codestore import CodeStore
from oodida_core.state.registry import Registry
from oodida_core.state.store import AssignmentStore

from ._args import client_ids, finite_or_inf
from .assignment import Assignment
from .canary import run_canary
from .canary_rules import CanaryReport, Guard
from .connection import Connection, analyst_settings
from .deploy import Deployment, LocalCheck
from .experiment import Experiment, find_experiment, plan_experiment, run_experiment
from .experiment_result import ExperimentResult, Metric
from .requests import CloudRequests, Credentials

ASSIGNMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StreamWarning(UserWarning):
    """An assignment that runs until cancelled and names no ``keep``."""


def unbounded_stream_warning(aid: str, name: str) -> str:
    return (
        f"assignment {aid} ({name!r}) runs until cancelled (iterations 0) and names no 'keep': "
        "the cloud keeps only its latest iterations one by one (the operator's "
        "OODIDA_MAX_KEPT_ITERATIONS, 1000 unless changed) and folds older ones into a summary. "
        f"Set 'keep' or 'iterations' in the spec; stop it with o.assignment({aid!r}).cancel() "
        f"or `oodida cancel {aid}`."
    )


class Oodida:
    """A connection to an OODIDA system for one analyst, who proves who they are with the
    token the operator issued (``oodida users add NAME``); ``OODIDA_TOKEN`` by default.

    >>> o = Oodida("redis://127.0.0.1:6379/0", user="alice", token="oodida_...")   # doctest: +SKIP

    The cloud checks the token on every request; before the first read of anything the
    library asks the cloud once whether the token is good (AuthError if not).
    """

    def __init__(
        self,
        url: str | None = None,
        user: str | None = None,
        *,
        token: str | None = None,
        settings: Settings | None = None,
        accept_timeout: float = 30.0,
    ) -> None:
        self.settings = analyst_settings(url, user, token, settings)
        self.user = self.settings.user
        self.accept_timeout = finite_or_inf(accept_timeout, "accept_timeout")
        # Built once, here (connection.py): the Redis client (pinged), the stores, the Celery app.
        self.connection = Connection.open(self.settings)
        self.requests = CloudRequests(self.connection)  # the one channel to the cloud
        self.deploy_check = LocalCheck(CodePolicy.from_env())  # its sandbox: at the first check

    @property
    def redis(self) -> redis.Redis:
        return self.connection.redis

    @property
    def keys(self) -> Keys:
        return self.connection.keys

    @property
    def store(self) -> AssignmentStore:
        return self.connection.store

    @property
    def registry(self) -> Registry:
        return self.connection.registry

    @property
    def codestore(self) -> CodeStore:
        return self.connection.codestore

    @property
    def app(self) -> Celery:
        return self.connection.app

    # -- assignments -------------------------------------------------------------------------
    @overload
    def submit(self, spec: AssignmentSpec, *, wait_accepted: bool = True) -> Assignment: ...
    @overload
    def submit(self, spec: Mapping[str, Any], *, wait_accepted: bool = True) -> Any: ...

    def submit(self, spec: Mapping[str, Any] | AssignmentSpec, *, wait_accepted: bool = True) -> Any:
        """Validate ``spec``, hand it to the cloud and return a handle to follow it.

        Raises SpecError for a bad spec (checked here and again by the cloud, which also
        checks the clients, their signals and the user's custom code), OodidaError when no
        cloud worker answers. The paper's deploy form (``mode`` ``deploy_onboard`` or
        ``deploy_offboard`` with ``filename``) returns a Deployment instead.
        """
        parsed = spec if isinstance(spec, AssignmentSpec) else validate_spec(spec)
        if isinstance(parsed, DeploySpec):
            if parsed.mode == "deploy_offboard":
                return self.deploy_offboard(parsed.filename)
            wanted = parsed.clients
            clients: str | int | list[int] | dict[str, Any] = (
                list(wanted)
                if isinstance(wanted, tuple)
                else wanted.model_dump(mode="json")
                if isinstance(wanted, TagFilter)
                else wanted
            )
            return self.deploy_onboard(parsed.filename, clients=clients)
        wire = spec_to_wire(parsed)
        aid = uuid.uuid4().hex[:16]
        request = SubmitRequest(assignment_id=aid, spec=wire, **self._credentials())
        self._send(TASK_START, request, request_task_id(aid, TASK_START))
        handle = Assignment(self, aid, wire, request_id=request.request_id)
        if parsed.iterations == 0 and parsed.keep is None:
            warnings.warn(unbounded_stream_warning(aid, parsed.name), StreamWarning, stacklevel=2)
        if wait_accepted:
            handle.wait_accepted(self.accept_timeout)
        return handle

    # -- custom code -------------------------------------------------------------------------
    @overload
    def deploy_onboard(
        self,
        filename: str | os.PathLike[str],
        clients: str | int | list[int] | Mapping[str, Any] = "all",
        *,
        canary: None = None,
    ) -> Deployment: ...
    @overload
    def deploy_onboard(
        self,
        filename: str | os.PathLike[str],
        clients: str | int | list[int] | Mapping[str, Any] = "all",
        *,
        canary: float | int,
        guard: Guard,
        seed: int | None = None,
        deploy_timeout: float = 60.0,
    ) -> CanaryReport: ...

    def deploy_onboard(
        self,
        filename: str | os.PathLike[str],
        clients: str | int | list[int] | Mapping[str, Any] = "all",
        *,
        canary: float | int | None = None,
        guard: Guard | None = None,
        seed: int | None = None,
        deploy_timeout: float = 60.0,
    ) -> Deployment | CanaryReport:
        """Check a module here, then deploy it as your on-board code on ``clients`` ("all", a
        list of ids, k live clients, or a tag filter such as ``{"tags": {"powertrain": "ev"}}``).
        It takes effect for the next task on each client.

        With ``canary`` (a fraction 0 < canary < 1 of the live selected vehicles, or a count)
        and a ``guard``: a canary deployment (canary.py), which returns its CanaryReport once the
        module was promoted to every selected vehicle or rolled back on the canary vehicles."""
        if canary is not None or guard is not None:
            if canary is None:
                raise SpecError([SpecIssue("canary", None, "a guard needs a canary: a fraction or a count")])
            return run_canary(self, filename, clients, canary, guard, seed, deploy_timeout)
        raw = validate_spec({"mode": "deploy_onboard", "filename": str(filename), "clients": clients})
        assert isinstance(raw, DeploySpec)
        wanted = raw.clients if not isinstance(raw.clients, list) else tuple(raw.clients)
        if isinstance(wanted, TagFilter):  # SpecError now if no live client matches (the cloud checks too)
            select_tagged(wanted, self.clients(), "check")
        return self._deploy("onboard", filename, wanted)

    def deploy_offboard(self, filename: str | os.PathLike[str]) -> Deployment:
        """Check a module here, then deploy it as your off-board code in the cloud."""
        validate_spec({"mode": "deploy_offboard", "filename": str(filename)})
        return self._deploy("offboard", filename, "all")

    def _deploy(self, role: Role, filename: str | os.PathLike[str], clients: Any) -> Deployment:
        checked = self.deploy_check.module(filename, role)
        deploy_id = uuid.uuid4().hex[:16]
        request = DeployRequest(
            deploy_id=deploy_id,
            role=role,
            filename=checked.filename,
            source=checked.source,
            clients=clients,
            **self._credentials(),
        )
        self._send(TASK_DEPLOY, request, request_task_id(deploy_id, TASK_DEPLOY))
        return Deployment(self, deploy_id, checked.version, role, checked.filename, request.request_id)

    def rollback_onboard(self, clients: list[int], deployment: str | None = None) -> dict[int, str | None]:
        """Restore the previous on-board version on each client: {client: version now}.
        With ``deployment`` (a deployment's id): undo that one deployment on those of its
        targets, where it is still current, and withdraw it where a client has not installed it
        yet (a canary rolled back). The cloud does it, for the user the token proves
        (OodidaError: nothing to roll back)."""
        if deployment is not None and not (isinstance(deployment, str) and ASSIGNMENT_ID.match(deployment)):
            raise BadArgument(f"deployment must be a deployment's id, not {deployment!r:.60}")
        ids = tuple(client_ids(clients))
        request = RollbackRequest(role="onboard", clients=ids, deploy_id=deployment, **self._credentials())
        value = self._request(TASK_ROLLBACK, request, "rollback")
        return {int(c): v.get("version") if isinstance(v, dict) else v for c, v in dict(value or {}).items()}

    def rollback_offboard(self) -> str | None:
        """Restore the previous off-board version; the version now current."""
        request = RollbackRequest(role="offboard", **self._credentials())
        value = self._request(TASK_ROLLBACK, request, "rollback")
        return None if value is None else str(value)

    def code_versions(self, clients: list[int] | None = None) -> dict[str, Any]:
        """Your current versions: {"offboard": version, "onboard": {client: version}}, as the
        cloud reads them for the user the token proves."""
        ids = client_ids(clients) if clients is not None else [c.client_id for c in self.clients()]
        request = VersionsRequest(clients=tuple(ids), **self._credentials())
        value = dict(self._request(TASK_VERSIONS, request, "versions") or {})
        return {
            "offboard": value.get("offboard"),
            "onboard": {int(c): v for c, v in dict(value.get("onboard") or {}).items()},
        }

    # -- experiments -------------------------------------------------------------------------
    def experiment(
        self,
        spec: Mapping[str, Any] | AssignmentSpec,
        variants: Mapping[str, str | os.PathLike[str]] | None = None,
        *,
        split: Mapping[str, float] | None = None,
        metric: Metric = None,
        seed: int | None = None,
        test: str = "welch",
        confidence: float = 0.95,
        deploy_timeout: float = 30.0,
    ) -> Experiment:
        """An A/B experiment: one assignment per variant ({name: module path or "builtin"}, the
        first is the control), each over its own random, disjoint group of the selected live
        vehicles (``split``: {name: fraction}, equal by default; ``seed``: drawn and recorded if
        None). ``metric``: a signal name, a function of one on-board value, or None for numbers.
        ``test``: "welch" or "mannwhitney". ``.wait()`` gives the ExperimentResult.
        ``spec`` alone may be the JSON form (an ``experiment`` block with ``variants``)."""
        plan = plan_experiment(
            spec, variants, split=split, metric=metric, seed=seed, test=test, confidence=confidence
        )
        return run_experiment(self, plan, deploy_timeout)

    def experiment_result(
        self,
        experiment_id: str,
        *,
        metric: Metric = None,
        test: str | None = None,
        confidence: float | None = None,
    ) -> ExperimentResult:
        """An experiment's statistics recomputed from its stored assignments: the metric (a
        signal name) and test it recorded unless given here (a metric function is not stored:
        pass it again), at ``confidence`` (0.95 unless given). UnknownAssignment when none is
        found."""
        self.authenticate()
        return find_experiment(self, experiment_id, metric, test, confidence)

    def assignment(self, assignment_id: str) -> Assignment:
        """A handle to one of this user's assignments, by id."""
        self._check_id(assignment_id)
        self.authenticate()
        record = self.store.get(assignment_id)
        if record is None or record.user != self.user:
            raise UnknownAssignment(f"no assignment {assignment_id!r} of user {self.user!r}")
        return Assignment(self, assignment_id)

    def purge(self, assignment_id: str) -> int:
        """Delete every key of one of your ended assignments now (instead of at its expiry):
        its record, results, events and Celery's task results and chord counters; the number of
        keys deleted. UnknownAssignment for another user's or an unknown id, OodidaError for an
        assignment that is still running (cancel it first)."""
        self._check_id(assignment_id)
        request = PurgeRequest(assignment_id=assignment_id, **self._credentials())
        value = self._request(TASK_PURGE, request, "purge")
        return int(dict(value or {}).get("deleted", 0))

    def assignments(self) -> list[str]:
        """Ids of this user's assignments, oldest first."""
        self.authenticate()
        return self.store.user_assignments(self.user)

    def clients(self, tags: Mapping[str, str | list[str]] | None = None) -> list[ClientInfo]:
        """Live clients: id, signals, tags, worker, last heartbeat. With ``tags`` (each key one
        value or a list of them, e.g. ``{"powertrain": "ev", "region": ["eu", "us"]}``), only
        those whose tags match; SpecError for a malformed filter."""
        wanted = filter_of(tags) if tags is not None else None
        self.authenticate()
        live = self.registry.live()
        return live if wanted is None else [c for c in live if wanted.matches(c.tags)]

    def _check_id(self, assignment_id: object) -> None:
        """An id that cannot exist is an UnknownAssignment before anything is read or sent."""
        if not isinstance(assignment_id, str) or not ASSIGNMENT_ID.match(assignment_id):
            raise UnknownAssignment(f"no assignment {assignment_id!r:.80} of user {self.user!r}")

    # -- requests to the cloud ---------------------------------------------------------------
    def authenticate(self) -> None:
        """Ask the cloud whether this user's token is good, once per connection; AuthError if
        not. Every read of the library does this first; requests carry the token anyway."""
        if not self.requests.authenticated:
            self._request(TASK_AUTHENTICATE, AuthRequest(**self._credentials()), "authentication")

    # Oodida's own requests go through these three (tests that send raw requests and the
    # deploy benchmark, which stamps each send, use them too); they are ``self.requests``.
    def _credentials(self) -> Credentials:
        return self.requests.credentials()

    def _request(self, name: str, request: Request, what: str) -> Any:
        """Send ``request`` and wait for the cloud's reply: its value, or its error raised."""
        return self.requests.request(name, request, what, self.accept_timeout)

    def _send(self, name: str, request: Request, task_id: str) -> None:
        self.requests.send(name, request, task_id)

    def close(self) -> None:
        self.deploy_check.close()
        self.connection.close()

    def __enter__(self) -> Oodida:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
