"""Wire messages: frozen pydantic models with one decode point.

Every message that crosses a process boundary (a Celery task argument, a record in Redis)
is one of these. ``decode`` is the only place that turns untrusted data into a model; a
``ValidationError`` never escapes it, it becomes a ``MessageError``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticSerializationError

from oodida_core.protocol.errors import MessageError
from oodida_core.protocol.signals import canonical, is_vss_path
from oodida_core.protocol.tags import TagFilter, VehicleTags
from oodida_core.protocol.text import storable, storable_data

# Celery task names: the contract between the library, the cloud and the clients.
TASK_START = "oodida.cloud.start"
TASK_FINISH_ITERATION = "oodida.cloud.finish_iteration"
TASK_CANCEL = "oodida.cloud.cancel"
TASK_DEPLOY = "oodida.cloud.deploy"
TASK_AUTHENTICATE = "oodida.cloud.authenticate"
TASK_ROLLBACK = "oodida.cloud.rollback"
TASK_VERSIONS = "oodida.cloud.versions"
TASK_PURGE = "oodida.cloud.purge"
TASK_ONBOARD = "oodida.edge.onboard"
TASK_INSTALL = "oodida.edge.install"

Role = Literal["onboard", "offboard"]

Status = Literal["pending", "running", "done", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"done", "failed", "cancelled"})

# Ids and user names as they cross the wire: short, and safe in Redis keys and log lines.
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
# The one definition of a user name: what `oodida users add` stores and the cloud authenticates
# (oodida_core.security.auth), what the library accepts and what a message may carry.
MAX_USER_NAME = 64
USER_PATTERN = rf"^[A-Za-z0-9_.@-]{{1,{MAX_USER_NAME}}}$"
WireId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
WireUser = Annotated[str, Field(min_length=1, max_length=MAX_USER_NAME, pattern=USER_PATTERN)]
# Free text from outside (error messages of clients and of custom code, reasons): whatever it
# holds, it is stored as valid Unicode (lone surrogates escaped, oodida_core.protocol.text).
Text = Annotated[str, AfterValidator(storable)]

# A cap on anything decoded from text: a message larger than this is refused unread.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# The largest body a worker takes for each task, checked before the body is decoded
# (oodida_core.messaging.guard). A deployment carries a module of up to 4 MiB, which JSON may escape to
# six times that. An iteration's chord callback is immutable (``.si``): it carries no answers
# (the cloud reads each client's own result key), only which iteration ended.
MESSAGE_LIMITS: dict[str, int] = {
    TASK_START: 4 * 1024 * 1024,
    TASK_CANCEL: 64 * 1024,
    TASK_DEPLOY: 32 * 1024 * 1024,
    TASK_FINISH_ITERATION: 64 * 1024,
    TASK_ONBOARD: 16 * 1024 * 1024,
    TASK_INSTALL: 64 * 1024,
    TASK_AUTHENTICATE: 64 * 1024,
    TASK_ROLLBACK: 4 * 1024 * 1024,
    TASK_VERSIONS: 4 * 1024 * 1024,
    TASK_PURGE: 64 * 1024,
}
UNKNOWN_TASK_LIMIT = 1024 * 1024  # a task no worker knows is discarded by Celery: no need to read it


def message_limit(task: str) -> int:
    """The largest message body accepted for ``task``, in bytes."""
    return MESSAGE_LIMITS.get(task, UNKNOWN_TASK_LIMIT)


class Wire(BaseModel):
    """Base of every wire message: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        """The message as JSON text; a lone surrogate in free-form data (a value a client sent)
        is stored as its visible escape instead of failing the write."""
        try:
            return self.model_dump_json()
        except PydanticSerializationError:
            data = storable_data(self.model_dump())
            return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


M = TypeVar("M", bound=Wire)


def decode(model: type[M], data: object) -> M:
    """The one decode point: ``data`` (a dict, JSON text or bytes) to ``model``, or MessageError."""
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8")
        if isinstance(data, str):
            if len(data) > MAX_MESSAGE_BYTES:
                raise MessageError(f"{model.__name__}: message of {len(data)} bytes is too large")
            data = json.loads(data)
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}" for e in exc.errors()[:10]
        )
        raise MessageError(f"malformed {model.__name__}: {problems}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MessageError(f"malformed {model.__name__}: {exc}") from None


class Request(Wire):
    """Library -> cloud: every request names its user and carries that user's token; the
    cloud answers on the reply stream of ``request_id`` (none when it is empty)."""

    user: WireUser
    token: str = Field("", max_length=256, repr=False)
    request_id: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_-]*$")


class AuthRequest(Request):
    """Library -> cloud: is this user's token good? (before the library reads anything)"""


class SubmitRequest(Request):
    """Library -> cloud: run this spec for this user."""

    assignment_id: WireId
    spec: dict[str, Any]


class FinishIteration(Wire):
    """The arguments of ``finish_iteration``: which iteration, and why it ended. ``answers`` is
    never read (the cloud reads each client's own result key); the chord's callback is
    immutable and sends none, and a message that carries more is refused by its size limit."""

    assignment_id: WireId
    iteration: int = Field(ge=0)
    reason: Literal["complete", "deadline", "cancel", "quorum", "buffer"] = "complete"
    answers: list[Any] | None = None


class CancelRequest(Request):
    assignment_id: WireId


class PurgeRequest(Request):
    """Library -> cloud: delete every key of this ended assignment of this user."""

    assignment_id: WireId


class RollbackRequest(Request):
    """Library -> cloud: restore this user's previous code (off-board, or on these clients)."""

    role: Role
    clients: tuple[int, ...] = ()
    # Undo this on-board deployment on ``clients`` (a canary rolled back): pop it where it is
    # current, withdraw it where it is not installed yet (codestore.py undo_install).
    deploy_id: WireId | None = None


class VersionsRequest(Request):
    """Library -> cloud: this user's current code versions (on these clients, and off-board)."""

    clients: tuple[int, ...] = Field((), max_length=100_000)


class Reply(Wire):
    """Cloud -> library, on the request's reply stream: done, or refused and why."""

    ok: bool
    error: Literal["", "auth", "unknown", "refused", "quota"] = ""  # quota: value names the limit
    message: Text = ""
    value: Any = None


class OnboardTask(Wire):
    """Cloud -> one client: compute one iteration of an assignment on-board."""

    assignment_id: WireId
    user: WireUser
    iteration: int = Field(ge=0)
    client_id: int = Field(ge=1)
    method: str
    signals: tuple[str, ...] = Field(min_length=1)
    samples: int = Field(ge=1, le=1_000_000)
    frequency: int = Field(ge=1, le=100)
    threshold: float | None = None
    direction: Literal["above", "below"] = "above"
    sample_size: int | None = None
    bins: int | None = None
    q: float | None = None
    proximal_mu: float | None = Field(default=None, ge=0)  # FedProx, on-board 'train'
    model: Any = None
    federated: bool = False
    deadline: float
    # the spec's min_clients: the client announces the quorum once that many answered
    quorum: int | None = Field(default=None, ge=1)
    # asynchronous aggregation (the spec's buffer): the client announces every answer it stores
    buffered: bool = False


class OnboardResult(Wire):
    """One client -> cloud: what one on-board task produced (never an exception)."""

    assignment_id: str
    iteration: int
    client_id: int
    status: Literal["ok", "failed", "skipped"]
    value: Any = None
    version: str = "builtin"
    error: Text | None = None
    started_at: float
    finished_at: float


class IterationResult(Wire):
    """The outcome of one iteration, as stored and as the analyst reads it. ``status`` is
    ``failed`` when the iteration has no value because code failed: every client that answered
    failed (at least one did), or the off-board step failed."""

    index: int
    status: Literal["ok", "failed"] = "ok"
    value: Any = None
    onboard: dict[int, Any] = Field(default_factory=dict)
    versions: dict[int, str] = Field(default_factory=dict)
    discarded: dict[int, Text] = Field(default_factory=dict)
    missing: tuple[int, ...] = ()
    # closed by its quorum (min_clients): the clients that had not answered then; their
    # answers are kept out of this iteration whenever they come (``missing``: at a deadline)
    late: tuple[int, ...] = ()
    # asynchronous aggregation: per aggregated client, how many model versions old its model was
    staleness: dict[int, int] = Field(default_factory=dict)
    failed: dict[int, Text] = Field(default_factory=dict)
    error: Text | None = None  # the off-board step's error, if it failed
    offboard_version: str = "builtin"
    ended_by: Literal["complete", "deadline", "cancel", "quorum", "buffer"] = "complete"
    started_at: float
    finished_at: float


class NumberSummary(Wire):
    """Numbers seen in folded iterations' off-board values: how many, smallest, largest, sum."""

    n: int = 0
    min: float | None = None
    max: float | None = None
    sum: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.sum / self.n if self.n else None


class FoldedIterations(Wire):
    """The iterations an assignment no longer keeps one by one (its ``keep`` cap): how many,
    which, what their clients did and what their off-board values held. ``values`` summarises
    numeric values: key ``""`` for a number, the key for a dict of numbers (one per signal)."""

    count: int = 0
    first: int = 0
    last: int = -1
    started_at: float | None = None
    finished_at: float | None = None
    kept: int = 0
    discarded: int = 0
    missing: int = 0
    late: int = 0  # clients not answered when a quorum closed their iteration
    failed: int = 0
    failed_iterations: int = 0
    values: dict[Annotated[str, Field(max_length=200)], NumberSummary] = Field(
        default_factory=dict, max_length=64
    )
    other_values: int = 0  # values that are not numbers nor dicts of numbers
    versions: dict[Annotated[str, Field(max_length=200)], int] = Field(default_factory=dict, max_length=64)


def _signal_id(name: str) -> str:
    """A signal id as a vehicle registers it: a built-in short name or a VSS path (ASCII: no
    lookalike or invisible character can pass for another signal)."""
    if canonical(name) != name:
        raise ValueError(f"{name[:80]!r} is not a signal id (a built-in short name or a VSS path)")
    return name


def _vss(path: str) -> str:
    if not is_vss_path(path):
        raise ValueError(f"{path[:80]!r} is not a VSS path (Vehicle.Branch.Leaf)")
    return path


SignalId = Annotated[str, AfterValidator(_signal_id)]


class CatalogueEntry(Wire):
    """One signal a vehicle delivers: its id, VSS path, unit, range and where it comes from."""

    signal: SignalId
    vss: Annotated[str, AfterValidator(_vss)]
    unit: Annotated[str, Field(max_length=64)]
    low: FiniteFloat
    high: FiniteFloat
    origin: Annotated[str, Field(max_length=300)]  # "simulated", "csv:speed", "obd:RPM", "dbc:VehicleSpeed"

    @model_validator(mode="after")
    def _range(self) -> CatalogueEntry:
        if not self.low < self.high:
            raise ValueError(f"the range {self.low:g} to {self.high:g} is empty")
        return self


class ClientInfo(Wire):
    """A client's entry in the live registry."""

    client_id: int = Field(ge=1)
    signals: tuple[SignalId, ...] = Field(max_length=1000)
    source: Annotated[str, Field(max_length=300)] = ""  # "simulated", "csv", "mdf", "canlog", "obd", "can"
    catalogue: tuple[CatalogueEntry, ...] = Field(default=(), max_length=1000)
    tags: VehicleTags = Field(default_factory=dict)  # key=value, set by the operator (protocol/tags.py)
    worker: Annotated[str, Field(max_length=1024)]
    hostname: Annotated[str, Field(max_length=255)]
    pid: int
    started_at: float
    last_seen: float = 0.0


class AssignmentRecord(Wire):
    """An assignment as the library sees it (without its iterations)."""

    id: str
    user: str
    status: Status
    spec: dict[str, Any]
    clients: tuple[int, ...] = ()
    iterations_done: int = 0
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: Text | None = None
    error_issues: tuple[dict[str, Any], ...] = ()
    limit: str | None = None  # the limit that ended it (QuotaError), if one did
    failed_iterations: int = 0  # iterations whose status is failed
    folded: FoldedIterations | None = None  # iterations no longer kept one by one (``keep``)


class DeployRequest(Request):
    """Library -> cloud: deploy this module for this user."""

    deploy_id: WireId
    role: Role
    filename: str = Field(min_length=1, max_length=255)
    source: str = Field(max_length=4 * 1024 * 1024)
    clients: Literal["all"] | tuple[int, ...] | int | TagFilter = "all"


class InstallTask(Wire):
    """Cloud -> one client: make this version the user's on-board code here."""

    deploy_id: WireId
    user: WireUser
    client_id: int = Field(ge=1)
    version: str
    filename: str


class PendingInstall(Wire):
    """A deployment waiting for one client, kept until the client installed it."""

    task: InstallTask
    sent_at: float


class Verdict(Wire):
    """One target's answer to a deployment."""

    accepted: bool
    reason: Text = ""
    at: float


class DeploymentRecord(Wire):
    """A deployment as the library sees it."""

    id: str
    user: str
    role: Role
    filename: str
    version: str = ""
    status: Literal["pending", "sent", "done", "failed"]
    targets: tuple[int, ...] = ()
    verdicts: dict[int, Verdict] = Field(default_factory=dict)
    error: Text | None = None
    created_at: float
