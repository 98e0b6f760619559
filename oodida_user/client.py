"""The analyst's library: submit assignments, follow them, read results, list clients."""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, overload

import redis
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from oodida_core.auth import USER_PATTERN
from oodida_core.celery_app import make_celery_app
from oodida_core.codestore import CodeStore
from oodida_core.customcode import CodePolicy, check_source
from oodida_core.errors import (
    BadArgument,
    CustomCodeError,
    OodidaError,
    QuotaError,
    UnknownAssignment,
)
from oodida_core.keys import CLOUD_QUEUE, Keys
from oodida_core.quota import out_of_memory, out_of_memory_cause
from oodida_core.registry import Registry
from oodida_core.sandbox import Sandbox, dry_run
from oodida_core.settings import Settings
from oodida_core.spec import AssignmentSpec, DeploySpec, spec_to_wire, validate_spec
from oodida_core.store import AssignmentStore
from oodida_core.tasklabels import args_label
from oodida_core.wire import (
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
    Reply,
    Request,
    Role,
    RollbackRequest,
    SubmitRequest,
    VersionsRequest,
)

from ._args import POLL_MS, client_ids, finite_or_inf
from .assignment import Assignment
from .deploy import Deployment
from .replies import await_reply, masked, new_request_id, raise_for, read_reply

ASSIGNMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Credentials(TypedDict):
    """What every request to the cloud carries: who, the proof, and where to answer."""

    user: str
    token: str
    request_id: str


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
        base = settings or Settings.from_env()
        given = (("redis_url", url), ("user", user), ("token", token))
        try:  # validated (the broker URL too), not merely copied
            self.settings = Settings.model_validate({**dict(base), **{k: v for k, v in given if v}})
        except ValidationError as exc:
            problems = (str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise BadArgument("; ".join(problems)) from None
        self.user = self.settings.user
        self._authenticated = False
        if not self.user:
            raise OodidaError("no user given: pass user=... or set OODIDA_USER")
        if not USER_PATTERN.match(self.user):
            raise OodidaError(f"user name {self.user!r} must be 1-64 letters, digits or . _ @ -")
        self.accept_timeout = finite_or_inf(accept_timeout, "accept_timeout")
        # The library only reads Redis (it writes by publishing to the cloud): with ACLs, through
        # a read-only user (read_url); the Celery app publishes as the analyst role (redis_url).
        try:
            self.redis = redis.Redis.from_url(
                self.settings.read_url or self.settings.redis_url,
                socket_connect_timeout=5,
                socket_timeout=POLL_MS / 1000 + 10,
                health_check_interval=30,
            )
        except (ValueError, TypeError) as exc:
            url = self.settings.read_url or self.settings.redis_url
            raise BadArgument(f"{url!r:.80} is not a Redis URL: {exc}") from None
        try:
            self.redis.ping()
        except redis.exceptions.RedisError as exc:
            self.redis.close()
            raise OodidaError(f"cannot reach the OODIDA broker at {self.settings.redis_url}: {exc}") from None
        self.keys = Keys(self.settings.key_prefix)
        self.store = AssignmentStore(self.redis, self.keys, ttl=self.settings.assignment_ttl)
        self.registry = Registry(self.redis, self.settings)
        self.codestore = CodeStore(self.redis, self.keys, ttl=self.settings.assignment_ttl)
        self.policy = CodePolicy.from_env()
        self._sandbox: Sandbox | None = None
        self.app = make_celery_app(self.settings, "oodida-user")
        # Requests go to `cloud` by name; declaring it would add to kombu's binding sets, which
        # the analyst role may not write (nothing would bound what it stores there).
        self.app.conf.task_queues = [
            Queue(CLOUD_QUEUE, Exchange(CLOUD_QUEUE), routing_key=CLOUD_QUEUE, no_declare=True)
        ]

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
            clients = list(parsed.clients) if isinstance(parsed.clients, tuple) else parsed.clients
            return self.deploy_onboard(parsed.filename, clients=clients)
        wire = spec_to_wire(parsed)
        aid = uuid.uuid4().hex[:16]
        request = SubmitRequest(assignment_id=aid, spec=wire, **self._credentials())
        self._send(TASK_START, request, f"{aid}-start")
        handle = Assignment(self, aid, wire, request_id=request.request_id)
        if parsed.iterations == 0 and parsed.keep is None:
            warnings.warn(unbounded_stream_warning(aid, parsed.name), StreamWarning, stacklevel=2)
        if wait_accepted:
            handle.wait_accepted(self.accept_timeout)
        return handle

    # -- custom code -------------------------------------------------------------------------
    def deploy_onboard(
        self, filename: str | os.PathLike[str], clients: str | int | list[int] = "all"
    ) -> Deployment:
        """Check a module here, then deploy it as your on-board code on ``clients`` ("all", a
        list of ids, or k live clients). It takes effect for the next task on each client."""
        raw = validate_spec({"mode": "deploy_onboard", "filename": str(filename), "clients": clients})
        assert isinstance(raw, DeploySpec)
        wanted = raw.clients if not isinstance(raw.clients, list) else tuple(raw.clients)
        return self._deploy("onboard", filename, wanted)

    def deploy_offboard(self, filename: str | os.PathLike[str]) -> Deployment:
        """Check a module here, then deploy it as your off-board code in the cloud."""
        validate_spec({"mode": "deploy_offboard", "filename": str(filename)})
        return self._deploy("offboard", filename, "all")

    def _deploy(self, role: Role, filename: str | os.PathLike[str], clients: Any) -> Deployment:
        path = Path(filename)
        try:
            with path.open("rb") as fh:  # read no more than a module may hold, whatever the file
                data = fh.read(self.policy.max_source_bytes + 1)
            source = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text
        except FileNotFoundError:
            raise CustomCodeError(f"{path}: no such file") from None
        except UnicodeDecodeError:
            raise CustomCodeError(f"{path}: not a UTF-8 text file") from None
        except OSError as exc:
            raise CustomCodeError(f"{path}: cannot read it ({exc.strerror})") from None
        except ValueError as exc:  # a name the operating system cannot take (lone surrogates)
            raise CustomCodeError(f"{str(path)!r:.100}: not a usable file name ({exc})") from None
        if len(data) > self.policy.max_source_bytes:
            raise CustomCodeError(
                f"{path.name}: more than {self.policy.max_source_bytes} bytes; the limit is "
                f"{self.policy.max_source_bytes} bytes"
            )
        checked = check_source(source, path.name, self.policy)
        dry_run(checked, role, self.policy, self._local_sandbox())
        deploy_id = uuid.uuid4().hex[:16]
        request = DeployRequest(
            deploy_id=deploy_id,
            role=role,
            filename=path.name,
            source=source,
            clients=clients,
            **self._credentials(),
        )
        self._send(TASK_DEPLOY, request, f"{deploy_id}-deploy")
        return Deployment(self, deploy_id, checked.version, role, path.name, request.request_id)

    def _local_sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(max_children=1)
        return self._sandbox

    def rollback_onboard(self, clients: list[int]) -> dict[int, str | None]:
        """Restore the previous on-board version on each client: {client: version now}.
        The cloud does it, for the user the token proves (OodidaError: nothing to roll back)."""
        request = RollbackRequest(role="onboard", clients=tuple(client_ids(clients)), **self._credentials())
        value = self._request(TASK_ROLLBACK, request, "rollback")
        return {int(c): v for c, v in dict(value or {}).items()}

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

    def clients(self) -> list[ClientInfo]:
        """Live clients: id, signals, worker, last heartbeat."""
        self.authenticate()
        return self.registry.live()

    def _check_id(self, assignment_id: object) -> None:
        """An id that cannot exist is an UnknownAssignment before anything is read or sent."""
        if not isinstance(assignment_id, str) or not ASSIGNMENT_ID.match(assignment_id):
            raise UnknownAssignment(f"no assignment {assignment_id!r:.80} of user {self.user!r}")

    # -- requests to the cloud ---------------------------------------------------------------
    def authenticate(self) -> None:
        """Ask the cloud whether this user's token is good, once per connection; AuthError if
        not. Every read of the library does this first; requests carry the token anyway."""
        if not self._authenticated:
            self._request(TASK_AUTHENTICATE, AuthRequest(**self._credentials()), "authentication")

    def _credentials(self) -> Credentials:
        return {"user": self.user, "token": self.settings.token, "request_id": new_request_id()}

    def _request(self, name: str, request: Request, what: str) -> Any:
        """Send ``request`` and wait for the cloud's reply: its value, or its error raised."""
        self._send(name, request, f"{request.request_id}-{name.rsplit('.', 1)[-1]}")
        reply = self._await_reply(request.request_id, self.accept_timeout)
        if reply is None:
            raise OodidaError(
                f"no cloud worker answered the {what} request within {self.accept_timeout:.0f}s: "
                "is oodida-cloud running on this broker?"
            )
        return raise_for(reply)

    def _await_reply(self, request_id: str, timeout: float | None) -> Reply | None:
        """The cloud's reply (waiting up to ``timeout``; None: just look); a good one proves
        the token."""
        if timeout is None:
            reply = read_reply(self.redis, self.keys, request_id, None)
        else:
            reply = await_reply(self.redis, self.keys, request_id, timeout)
        if reply is not None and reply.error != "auth":
            self._authenticated = True
        return reply

    def _send(self, name: str, request: Request, task_id: str) -> None:
        message = request.to_wire()
        try:
            with self.app.producer_or_acquire() as producer, producer.batch():  # message + event: one trip
                self.app.send_task(
                    name,
                    args=(message,),
                    argsrepr=args_label(name, masked(message)),  # never the token
                    queue=CLOUD_QUEUE,
                    task_id=task_id,
                    ignore_result=True,
                    producer=producer,
                )
        except OperationalError as exc:
            raise OodidaError(f"cannot reach the OODIDA broker at {self.settings.redis_url}: {exc}") from None
        except Exception as exc:
            oom = out_of_memory_cause(exc)
            if oom is None:
                raise
            refusal = out_of_memory(oom)  # Redis at its maxmemory refused the message
            raise QuotaError(refusal.message, limit=refusal.limit) from None

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
        self.app.close()
        self.redis.close()

    def __enter__(self) -> Oodida:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
