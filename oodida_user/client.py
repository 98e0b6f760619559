"""The analyst's library: submit assignments, follow them, read results, list clients."""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, overload

import redis
from kombu.exceptions import OperationalError

from oodida_core.auth import USER_PATTERN
from oodida_core.celery_app import make_celery_app
from oodida_core.chords import answered
from oodida_core.codestore import CodeStore
from oodida_core.customcode import CodePolicy, check_source
from oodida_core.errors import (
    AssignmentTimeout,
    BadArgument,
    CustomCodeError,
    OodidaError,
    SpecError,
    SpecIssue,
    UnknownAssignment,
)
from oodida_core.keys import CLOUD_QUEUE, Keys
from oodida_core.registry import Registry
from oodida_core.sandbox import Sandbox, dry_run
from oodida_core.settings import Settings
from oodida_core.spec import MAX_CLIENT_ID, AssignmentSpec, DeploySpec, spec_to_wire, validate_spec
from oodida_core.store import AssignmentStore
from oodida_core.tasklabels import args_label
from oodida_core.wire import (
    FINAL_STATUSES,
    TASK_AUTHENTICATE,
    TASK_CANCEL,
    TASK_DEPLOY,
    TASK_ROLLBACK,
    TASK_START,
    TASK_VERSIONS,
    AssignmentRecord,
    AuthRequest,
    CancelRequest,
    ClientInfo,
    DeployRequest,
    IterationResult,
    Reply,
    Request,
    Role,
    RollbackRequest,
    SubmitRequest,
    VersionsRequest,
)

from .deploy import Deployment
from .progress import AssignmentProgress, ProgressBar
from .replies import await_reply, masked, new_request_id, raise_for, read_reply
from .results import IterationCounts, Result, iteration_for_user

ASSIGNMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_POLL_MS = 1000
_BAR_POLL_MS = 300  # how often a progress bar reads the current iteration's answers


class Credentials(TypedDict):
    """What every request to the cloud carries: who, the proof, and where to answer."""

    user: str
    token: str
    request_id: str


def _seconds(value: object, what: str = "timeout") -> float | None:
    """A timeout as the library uses it: None or inf for none; BadArgument for anything but a
    number (NaN included, which would never expire)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise BadArgument(f"{what} must be a number of seconds or None, not {value!r:.40}")
    return None if math.isinf(value) and value > 0 else float(value)


def _finite_or_inf(value: object, what: str = "timeout") -> float:
    seconds = _seconds(value, what)
    return math.inf if seconds is None else seconds


def _client_ids(value: object) -> list[int]:
    """A list of client ids as given to rollback and code_versions, checked."""
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 0 < c <= MAX_CLIENT_ID for c in value
    ):
        raise BadArgument(f"clients must be a list of positive client ids, not {value!r:.60}")
    return list(value)


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
        self.settings = base.model_copy(update={k: v for k, v in given if v})
        self.user = self.settings.user
        self._authenticated = False
        if not self.user:
            raise OodidaError("no user given: pass user=... or set OODIDA_USER")
        if not USER_PATTERN.match(self.user):
            raise OodidaError(f"user name {self.user!r} must be 1-64 letters, digits or . _ @ -")
        self.accept_timeout = _finite_or_inf(accept_timeout, "accept_timeout")
        # The library only reads Redis (it writes by publishing to the cloud): with ACLs, through
        # a read-only user (read_url); the Celery app publishes as the analyst role (redis_url).
        try:
            self.redis = redis.Redis.from_url(
                self.settings.read_url or self.settings.redis_url,
                socket_connect_timeout=5,
                socket_timeout=_POLL_MS / 1000 + 10,
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
        request = RollbackRequest(role="onboard", clients=tuple(_client_ids(clients)), **self._credentials())
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
        ids = _client_ids(clients) if clients is not None else [c.client_id for c in self.clients()]
        request = VersionsRequest(clients=tuple(ids), **self._credentials())
        value = dict(self._request(TASK_VERSIONS, request, "versions") or {})
        return {
            "offboard": value.get("offboard"),
            "onboard": {int(c): v for c, v in dict(value.get("onboard") or {}).items()},
        }

    def assignment(self, assignment_id: str) -> Assignment:
        """A handle to one of this user's assignments, by id."""
        if not isinstance(assignment_id, str) or not ASSIGNMENT_ID.match(assignment_id):
            raise UnknownAssignment(f"no assignment {assignment_id!r:.80} of user {self.user!r}")
        self.authenticate()
        record = self.store.get(assignment_id)
        if record is None or record.user != self.user:
            raise UnknownAssignment(f"no assignment {assignment_id!r} of user {self.user!r}")
        return Assignment(self, assignment_id)

    def assignments(self) -> list[str]:
        """Ids of this user's assignments, oldest first."""
        self.authenticate()
        return self.store.user_assignments(self.user)

    def clients(self) -> list[ClientInfo]:
        """Live clients: id, signals, worker, last heartbeat."""
        self.authenticate()
        return self.registry.live()

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


class Assignment:
    """A submitted assignment: follow it, wait for it, cancel it."""

    def __init__(
        self,
        oodida: Oodida,
        assignment_id: str,
        spec: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        self.o = oodida
        self.id = assignment_id
        self._spec = spec
        self._request_id = request_id  # the start request, until the cloud answered it
        self._created = time.time()

    @property
    def spec(self) -> dict[str, Any]:
        """The assignment's spec as the library validated it."""
        if self._spec is None:
            self._spec = dict(self.record().spec)
        return self._spec

    def __repr__(self) -> str:
        return f"<Assignment {self.id} {self.status()}>"

    def record(self) -> AssignmentRecord:
        if self._answered(None) is None:  # still queued: no cloud worker took it yet
            return AssignmentRecord(
                id=self.id, user=self.o.user, status="pending", spec=self.spec, created_at=self._created
            )
        self.o.authenticate()
        record = self.o.store.get(self.id)
        if record is None or record.user != self.o.user:
            raise UnknownAssignment(f"assignment {self.id!r} no longer exists (expired or purged)")
        return record

    def _answered(self, timeout: float | None) -> bool | None:
        """True once the cloud accepted the start request (the record exists from then on),
        None while it did not answer; raises what the cloud refused it with."""
        if self._request_id is None:
            return True
        reply = self.o._await_reply(self._request_id, timeout)
        if reply is None:
            return None
        self._request_id = None
        raise_for(reply)
        return True

    def status(self) -> str:
        return self.record().status

    def counts(self) -> list[IterationCounts]:
        """Per finished iteration: results kept, discarded, missing and failed."""
        return self.result().counts

    def result(self) -> Result:
        """A snapshot: status and every iteration finished so far."""
        pending = self.record()
        if pending.status == "pending" and self._request_id is not None:
            return Result.build(pending, [])
        record, iterations = self.o.store.snapshot(self.id)
        if record is None or record.user != self.o.user:
            raise UnknownAssignment(f"assignment {self.id!r} no longer exists (expired or purged)")
        return Result.build(record, iterations)

    def wait_accepted(self, timeout: float) -> None:
        """Until the cloud accepted the assignment; AuthError when it refused the user,
        SpecError/OodidaError when it refused the assignment."""
        timeout = _finite_or_inf(timeout)
        deadline = time.monotonic() + timeout
        if self._answered(timeout) is None:
            raise OodidaError(
                f"no cloud worker took assignment {self.id} within {timeout:.0f}s: is oodida-cloud "
                "running on this broker? The assignment stays queued until one does."
            )
        after = "0"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OodidaError(
                    f"no cloud worker took assignment {self.id} within {timeout:.0f}s: is oodida-cloud "
                    "running on this broker? The assignment stays queued until one does."
                )
            for entry_id, event in self.o.store.read_events(
                self.id, after, max(1, int(min(remaining, 1) * 1000))
            ):
                after = entry_id
                if event.get("type") in ("accepted", "iteration"):
                    return
                if event.get("type") == "end":
                    self._raise_if_rejected()
                    return
            if after == "0" and self.status() != "pending":  # events expired or were missed
                self._raise_if_rejected()
                return

    def _raise_if_rejected(self) -> None:
        record = self.record()
        if record.status != "failed":
            return
        if record.error_issues:
            raise SpecError(
                [
                    SpecIssue(str(i.get("field")), i.get("value"), str(i.get("rule")))
                    for i in record.error_issues
                ]
            )
        raise OodidaError(f"assignment {self.id} failed: {record.error}")

    def _wait_end_announced(self, timeout: float) -> bool:
        """True once the cloud announced the end (after the last iteration was stored)."""
        deadline = time.monotonic() + timeout
        after = "0"
        while (remaining := deadline - time.monotonic()) > 0:
            for entry_id, event in self.o.store.read_events(
                self.id, after, int(min(remaining, 1) * 1000) + 1
            ):
                after = entry_id
                if event.get("type") == "end":
                    return True
        return False

    def iterations(self, timeout: float | None = None) -> Iterator[IterationResult]:
        """Each iteration as soon as it is finished, in order, until the assignment ends."""
        offboard = str(self.spec.get("offboard", "collect"))
        for index in self._finished_indices(timeout):
            it = self.o.store.iteration(self.id, index)
            if it is not None:
                yield iteration_for_user(it, offboard)

    def _finished_indices(
        self,
        timeout: float | None,
        poll_ms: int = _POLL_MS,
        on_poll: Callable[[], None] | None = None,
    ) -> Iterator[int]:
        """Indices of finished iterations, in order, as the cloud announces them; ``on_poll``
        runs after every read of the event stream (at least every ``poll_ms``)."""
        timeout = _seconds(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        after, next_index = "0", 0
        pending: set[int] = set()
        ended = False
        while True:
            if deadline is None:
                block = poll_ms
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssignmentTimeout(f"assignment {self.id} did not finish within {timeout}s")
                block = max(1, int(min(poll_ms, left * 1000)))
            events = self.o.store.read_events(self.id, after, block)
            if on_poll is not None:
                on_poll()
            for entry_id, event in events:
                after = entry_id
                if event.get("type") == "iteration":
                    pending.add(int(event["index"]))
                elif event.get("type") == "end":
                    ended = True
            if not events and not ended and self.status() in FINAL_STATUSES:
                ended = True  # the end was not announced (a cloud worker died): trust the record
                pending.update(i.index for i in self.o.store.iterations(self.id) if i.index >= next_index)
            while next_index in pending:
                pending.discard(next_index)
                yield next_index
                next_index += 1
            if ended:
                yield from sorted(pending)
                return

    def wait(self, timeout: float | None = None, progress: bool = True) -> Result:
        """Until the assignment ends; its Result. A progress bar shows on a terminal or notebook.

        ``timeout`` defaults to iterations x the spec's timeout plus a minute; an assignment
        that runs until cancelled (iterations 0) is waited for without a limit.
        """
        timeout = _seconds(timeout)
        spec = self.spec
        total = int(spec.get("iterations") or 0)
        if timeout is None and total:
            timeout = total * float(spec.get("timeout") or 60) + 60
        with ProgressBar(total or None, enabled=progress, desc=str(spec.get("name", self.id))) as bar:
            if not bar.active:
                for _ in self._finished_indices(timeout):
                    pass
                return self.result()
            clients = len(self.record().clients)

            def show_answers() -> None:
                nonlocal clients
                clients = clients or len(self.record().clients)
                bar.answered(answered(self.o.app, self.o.redis, self.id, bar.done), clients)

            for index in self._finished_indices(timeout, _BAR_POLL_MS, show_answers):
                it = self.o.store.iteration(self.id, index)
                bar.iteration_done(clients - len(it.missing) if it else None, clients)
        return self.result()

    def progress(self) -> AssignmentProgress:
        """How far it got: status, iterations done, clients that answered the current one."""
        record = self.record()
        total = int(record.spec.get("iterations") or 0) or None
        count: int | None = 0
        if record.status == "running":
            count = answered(self.o.app, self.o.redis, self.id, record.iterations_done)
        return AssignmentProgress(
            status=record.status,
            iterations_done=record.iterations_done,
            iterations=total,
            clients=len(record.clients),
            answered=count,
        )

    def cancel(self, timeout: float = 30.0) -> Result:
        """Stop after the running iteration at the latest; returns the result as it stands."""
        timeout = _finite_or_inf(timeout)
        record = self.record()
        if record.status not in FINAL_STATUSES:
            request = CancelRequest(assignment_id=self.id, **self.o._credentials())
            self.o._request(TASK_CANCEL, request, "cancel")
        if not self._wait_end_announced(timeout) and self.status() not in FINAL_STATUSES:
            raise OodidaError(
                f"cancel of {self.id} not confirmed within {timeout}s: is oodida-cloud running?"
            )
        return self.result()
