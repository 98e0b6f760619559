"""Redis ACL users per role and per vehicle, so that holding one set of credentials is not
holding the system's.

=================  ============================================================================
admin              everything (the operator: ``oodida users``, ``oodida vehicles``, ``oodida acl``)
cloud              every key and command but the dangerous ones (it is the trusted part)
analyst            publish to the ``cloud`` queue and task events, nothing else (no reads)
analyst-read       read only: assignments, results, deployments, the registry, the cloud's replies
flower             Flower: receive task events, ask workers for their state (inspection), and on
                   Redis 7 count the messages waiting in ``cloud`` and ``client.*`` (LLEN only)
vehicle-<name>     one vehicle (or one simulated fleet process): its own queue(s)
                   ``client.<id>``, the results of its own tasks (task ids end in ``-c<id>``), its
                   own on-board pointers, pending installs, deployment verdicts, registry entry
                   and heartbeat; chord counters and the ``cloud`` queue (write only on Redis 7)
vehicle-<name>-read  read only (Redis 6.2): code sources by version, assignments' end markers
=================  ============================================================================

No vehicle writes the index of client ids (the registry's list): ``add_vehicle`` puts the
vehicle's ids there, ``revoke_vehicle`` takes them out with their entries. No vehicle reads
an assignment's record or results: a real-time client reads only its end marker.

Redis 6.2 (the embedded one) grants a key pattern to every command a user may run: a user who
may read a key may also write it. So there a role that must only read some keys gets a second
user, ``<user>-read``, limited to read commands. Redis 7 has key selectors (``%R~``, ``%W~``):
there a vehicle is one user that may only push to ``cloud`` (not read the requests waiting
there) and only read code and assignment state (``selectors=True``).

Flower reads no queue, result, assignment or registry entry and writes no task. It gets task
events by PSUBSCRIBE (kombu's fanout: its receiver's queue ``celeryev.<uuid>`` and binding are
declared but never hold a message) and inspects workers by PUBLISH on the remote-control channel,
taking the answers from its reply queue ``<uuid>.reply.celery.pidbox``. It must BRPOP that queue,
so on Redis 6.2 it cannot also have LLEN on the task queues (it could BRPOP them too): its broker
page shows no queue lengths there. On Redis 7 a selector ``(~cloud ~client.* +llen)`` allows
LLEN and nothing else on them. Its queues do not expire (``oodida_ops/flower.py``), so kombu
needs no Lua script and no shared deadline set for their bindings. Redis's channel rules do not
tell subscribing from publishing: Flower may also publish task events (as analysts and vehicles
may), and remote-control commands, which workers answer only when they are inspection.

Nobody but admin and cloud can read ``Keys.users`` or write code. Every worker listens to
Celery's remote control (Flower lists only workers that answer it), so a vehicle may subscribe,
and on Redis 6.2 then also publish, there; no worker obeys anything but inspection
(remote_control.py). Analysts cannot publish there.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

import redis

from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.keys import CLIENT_QUEUES, CLOUD_QUEUE, Keys, client_queue

ROLES = ("admin", "cloud", "analyst", "analyst-read", "flower")
VEHICLE_PREFIX = "vehicle-"  # a vehicle's ACL user is <prefix>-vehicle-<name>

# Celery's and kombu's own keys and channels on the Redis transport and result backend.
CELERY_RESULTS = ("celery-task-meta-*", "celery-taskset-meta-*")
EVENT_CHANNELS = "/*.celeryev/*"  # task events (kombu's fanout prefix is /<db>.)
# A worker's remote-control mailbox: its node's queue and binding (declared, never holding a
# message: commands come by PUBLISH), the reply exchange's bindings and the reply queues.
PIDBOX_NODE = ("*@*.celery.pidbox", "_kombu.binding.celery.pidbox", "_kombu.binding_permanent.celery.pidbox")
PIDBOX_REPLY_BINDING = "_kombu.binding.reply.celery.pidbox"
PIDBOX_REPLIES = "????????-????-????-????-????????????.reply.celery.pidbox"  # <uuid>.reply...
PIDBOX_REPLY_PERMANENT = "_kombu.binding_permanent.reply.celery.pidbox"  # kombu adds a binding to both
# Flower's event receiver: its queue (fed by PUBLISH, so never holding a message) and bindings.
EVENT_QUEUES = "celeryev.????????-????-????-????-????????????"  # celeryev.<uuid>
EVENT_BINDINGS = ("_kombu.binding.celeryev", "_kombu.binding_permanent.celeryev")
CONNECT = "+ping +client|setname"  # what clients send on connecting (CLIENT SETINFO: 7.2 only, optional)
# Lua: EVALSHA only, of the project's scripts, which the cloud and the operator load
# (``lua.preload``). EVAL and SCRIPT LOAD would let a user run any script, and a script that
# writes and then loops holds Redis for everyone until SHUTDOWN NOSAVE (found by a red team).
READ_COMMANDS = f"+@read -@dangerous -scan -keys -randomkey +multi +exec +discard +evalsha {CONNECT}"
# A vehicle's commands: what a worker and its registry, installs and results use; no key
# listing (SCAN, KEYS), no SORT (its BY/GET reach other keys), nothing dangerous, no Lua of
# its own (-@scripting +evalsha: see READ_COMMANDS).
# No set or sorted-set algebra either: one SUNIONSTORE naming a large key of its own 30 times
# held Redis for 9 s (found by a red team); nothing of the edge uses them.
ALGEBRA = (
    "-sunion -sunionstore -sinter -sinterstore -sdiff -sdiffstore -zunion -zunionstore -zinter "
    "-zinterstore -zdiff -zdiffstore -bitop -pfmerge"
)
VEHICLE_COMMANDS = (
    f"+@all -@dangerous -@scripting +evalsha -scan -keys -randomkey -sort -copy -move {ALGEBRA} "
    f"+info {CONNECT}"
)
# Redis 7 only: no key names learnt from invalidation messages (CLIENT TRACKING ... BCAST), no
# set-algebra cardinality.
VEHICLE_COMMANDS_7 = f"{VEHICLE_COMMANDS} -client|tracking -sintercard -zintercard"


def one_database(db: int) -> str:
    """``-select`` for a role on database 0 (the project's URLs): ACL key patterns hold in
    every database, so SELECT would let a vehicle push onto `cloud` of another system sharing
    the server (red team). A role on another database needs SELECT to reach it."""
    return " -select" if db == 0 else ""


# Flower's commands, each seen in use (MONITOR): task events by PSUBSCRIBE; inspection by
# PUBLISH, a reply queue bound (SADD, SREM), declared (LLEN in MULTI), taken (BRPOP) and deleted
# (DEL); PUNSUBSCRIBE when its receiver stops.
FLOWER_COMMANDS = f"+psubscribe +punsubscribe +publish +sadd +srem +llen +brpop +del +multi +exec {CONNECT}"


def result_key(task_pattern: str) -> str:
    """The result backend's key (and channel) of a task id or task id pattern."""
    return f"celery-task-meta-{task_pattern}"


def vehicle_task_ids(client_id: int) -> str:
    """Pattern of the ids of every task sent to one client: on-board ``<aid>-i<n>-c<id>``,
    install ``<deploy id>-c<id>`` (oodida_cloud/planning.py, deploy.py)."""
    return f"*-c{client_id}"


@dataclass(frozen=True)
class Role:
    name: str
    keys: tuple[str, ...]  # read and write
    channels: tuple[str, ...]
    commands: str
    read_keys: tuple[str, ...] = field(default=())  # Redis 7: %R~ (read only)
    write_keys: tuple[str, ...] = field(default=())  # Redis 7: %W~ (write only)
    selectors: tuple[str, ...] = field(default=())  # Redis 7: "(~keys +commands)", each on its own

    def user(self, prefix: str = "oodida") -> str:
        return f"{prefix}-{self.name}"

    def rules(self, password: str) -> list[str]:
        """The arguments of ``ACL SETUSER <user>`` for this role (from a clean slate)."""
        return [
            "reset",
            "resetchannels",  # 6.2 lets a reset user keep every channel (acl-pubsub-default)
            "on",
            f">{password}",
            *(f"~{k}" for k in self.keys),
            *(f"%R~{k}" for k in self.read_keys),
            *(f"%W~{k}" for k in self.write_keys),
            *(f"&{c}" for c in self.channels),
            *self.commands.split(),
            *self.selectors,
        ]


def flower_role(selectors: bool = False, db: int = 0) -> Role:
    """Flower's user on database ``db``; with ``selectors`` (Redis 7), also LLEN (and only LLEN)
    on the task queues, for its broker page."""
    return Role(
        "flower",
        (*EVENT_BINDINGS, EVENT_QUEUES, PIDBOX_REPLY_BINDING, PIDBOX_REPLY_PERMANENT, PIDBOX_REPLIES),
        # PSUBSCRIBE'd literally (kombu's fanout pattern); PUBLISH'd (inspection, enable_events)
        (f"/{db}.celeryev/*", f"/{db}.celery.pidbox"),
        FLOWER_COMMANDS,
        selectors=(f"(~{CLOUD_QUEUE} ~{CLIENT_QUEUES} +llen)",) if selectors else (),
    )


def roles(keys: Keys, selectors: bool = False, db: int = 0) -> dict[str, Role]:
    """The rules of every role but the vehicles (``vehicle_roles``) for the key layout ``keys``
    on database ``db``, for a server with (Redis 7) or without (6.2) ``selectors``."""
    return {
        "admin": Role("admin", ("*",), ("*",), "+@all"),
        "cloud": Role("cloud", ("*",), ("*",), f"+@all -@dangerous +info {CONNECT}"),
        "analyst": Role(
            "analyst",
            (CLOUD_QUEUE,),  # the library never declares `cloud`: no binding sets to fill
            (EVENT_CHANNELS,),
            f"+lpush +llen +publish +multi +exec {CONNECT}",
        ),
        "analyst-read": Role(
            "analyst-read",
            (
                keys.assignment("*"),
                keys.user_assignments("*"),
                keys.deployment("*"),
                keys.client_index,
                keys.every_client_info,
                keys.every_client_seen,
                keys.every_assignment_ended,
                keys.cloud_workers,
                keys.reply("*"),
                "celery-taskset-meta-*",  # how many clients answered (progress bars)
            ),
            (),
            READ_COMMANDS + one_database(db),
        ),
        "flower": flower_role(selectors, db),
    }


def vehicle_user_name(name: str) -> str:
    """The role name of vehicle ``name`` (a client id, or a fleet process's name)."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise OodidaError(f"bad vehicle name {name!r}: letters, digits, '-', '_' and '.' only")
    return VEHICLE_PREFIX + name


def vehicle_roles(
    keys: Keys, name: str, client_ids: Iterable[int], selectors: bool = False, db: int = 0
) -> list[Role]:
    """The Redis user(s) of a vehicle (or of a simulated fleet process) serving ``client_ids``
    on database ``db``: one user on Redis 7 (``selectors``), a writer and a ``-read`` reader on
    Redis 6.2."""
    ids = sorted(set(client_ids))
    if not ids or ids[0] < 1:
        raise OodidaError("a vehicle needs one or more positive client ids")
    own: list[str] = []
    channels: list[str] = [EVENT_CHANNELS]
    for cid in ids:
        own += [
            client_queue(cid),  # its tasks (BRPOP; no ack emulation on edges: no 'unacked')
            f"_kombu.binding.{client_queue(cid)}",  # the worker declares its queue's binding
            f"_kombu.binding_permanent.{client_queue(cid)}",
            result_key(vehicle_task_ids(cid)),  # the answers of its own tasks only
            keys.onboard_pointer("*", cid),  # the pointers of its own installs
            keys.pending_installs(cid),
            keys.deployment_verdict("*", cid),  # its own verdicts
            keys.client_info(cid),  # its own registry entry and heartbeat
            keys.client_seen(cid),
        ]
        channels.append(result_key(vehicle_task_ids(cid)))  # Celery announces each result
    shared = [
        "celery-taskset-meta-*",  # chord counters: the last answer of an iteration joins them
        keys.every_deployment_events,  # "a verdict arrived" (the content is in the verdict key)
    ]
    # code by version; whether an assignment ended (a real-time client stops reading early)
    reads = [keys.code("*"), keys.every_assignment_ended, "_kombu.binding.cloud"]
    # Remote control, so that Flower lists the worker: every worker answers only inspection
    # (remote_control.py), and on 6.2 who may subscribe to the channel may publish on it.
    channels.append(f"/{db}.celery.pidbox")  # PSUBSCRIBE'd literally
    own += PIDBOX_NODE
    name = vehicle_user_name(name)
    if selectors:
        return [
            Role(
                name,
                (*own, *shared),
                tuple(channels),
                VEHICLE_COMMANDS_7 + one_database(db),
                read_keys=(*reads, PIDBOX_REPLY_BINDING),
                # pushing only: never reading, deleting or overwriting requests or replies (a
                # SET on `cloud` stopped every cloud worker, found by a red team)
                selectors=(f"(~{CLOUD_QUEUE} +lpush)", f"(~{PIDBOX_REPLIES} +lpush)"),
            )
        ]
    writes = (CLOUD_QUEUE, "_kombu.binding.cloud", PIDBOX_REPLY_BINDING, PIDBOX_REPLIES)
    return [
        Role(name, (*own, *shared, *writes), tuple(channels), VEHICLE_COMMANDS + one_database(db)),
        Role(f"{name}-read", tuple(reads[:2]), (), READ_COMMANDS + one_database(db)),
    ]


def has_selectors(client: redis.Redis) -> bool:
    """Whether the server behind ``client`` has ACL key selectors (Redis 7 or later)."""
    info = client.info("server")
    major = str(info.get("redis_version", "0")).split(".", 1)[0]
    return major.isdigit() and int(major) >= 7


def new_passwords(names: Iterable[str] = ROLES) -> dict[str, str]:
    """A fresh random password per role."""
    return {role: secrets.token_urlsafe(24) for role in names}


def role_url(base_url: str, user: str, password: str) -> str:
    """``base_url`` with ``user:password`` as its credentials."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def setuser_commands(
    keys: Keys,
    passwords: dict[str, str],
    extra: Iterable[Role] = (),
    selectors: bool = False,
    db: int = 0,
) -> list[list[str]]:
    """``ACL SETUSER`` commands (as argument lists) for every role that has a password, for a
    server with (Redis 7) or without (6.2, and valid on 7) ``selectors``, on database ``db``."""
    every = {**roles(keys, selectors, db), **{role.name: role for role in extra}}
    return [
        ["ACL", "SETUSER", role.user(keys.prefix), *role.rules(passwords[name])]
        for name, role in every.items()
        if name in passwords
    ]


# Redis 7 replays a MULTI/EXEC block of its append-only file as the ``default`` user and checks
# that user's ACL again at EXEC: with ``default`` switched off (or stripped of commands), every
# transaction is dropped when the server restarts, silently (redis/redis#14541, fixed after 8.2;
# valkey-io/valkey#3983). So the default user is locked with a random password that is thrown
# away at once, keeping its permissions: nobody can log in as it, and the file replays whole.
def default_user_rules(password: str | None = None) -> list[str]:
    """``ACL SETUSER default`` arguments that lock it without breaking the append-only file."""
    secret = password or secrets.token_urlsafe(32)
    return ["on", "resetpass", f">{secret}", "allkeys", "allchannels", "allcommands"]


def hashed_rules(rules: list[str], password: str) -> list[str]:
    """ACL rules with the password as its SHA-256 (``#<hex>``): an aclfile never holds one."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return [f"#{digest}" if rule == f">{password}" else rule for rule in rules]


def acl_lines(roles: Iterable[Role], passwords: dict[str, str], prefix: str) -> list[str]:
    """An aclfile: the default user locked (``default_user_rules``: a random password's
    hash, the password thrown away; not switched off, which would make Redis 7 drop every
    transaction of the append-only file at a restart), then one line per role."""
    password = secrets.token_urlsafe(32)
    lines = [" ".join(["user default", *hashed_rules(default_user_rules(password), password)])]
    for role in roles:
        lines.append(
            " ".join(
                [
                    "user",
                    role.user(prefix),
                    *hashed_rules(role.rules(passwords[role.name]), passwords[role.name]),
                ]
            )
        )
    return lines


def apply(
    client: redis.Redis,
    keys: Keys,
    passwords: dict[str, str],
    lock_default: bool = False,
    extra: Iterable[Role] = (),
) -> None:
    """Create or reset the role users on the server behind ``client`` (which must be allowed to
    run ACL); with ``lock_default``, lock the passwordless ``default`` user with a random
    password nobody keeps (``default_user_rules``; after this, every connection needs a role's
    URL). The rules fit the server (``has_selectors``) and the client's database."""
    try:
        db = int(client.connection_pool.connection_kwargs.get("db") or 0)
        for command in setuser_commands(keys, passwords, extra, has_selectors(client), db):
            client.execute_command(*command)
        if lock_default:
            client.execute_command("ACL", "SETUSER", "default", *default_user_rules())
    except redis.exceptions.ResponseError as exc:
        raise OodidaError(f"the Redis server refused the ACL rules: {exc}") from None


def persist(client: redis.Redis) -> bool:
    """``ACL SAVE``: write the users to the server's aclfile, so that they survive a restart
    (the docker fleet has one). False when the server has no aclfile."""
    try:
        client.execute_command("ACL", "SAVE")
    except redis.exceptions.ResponseError as exc:
        if "acl file" in str(exc).lower() or "aclfile" in str(exc).lower():
            return False
        raise
    return True


def url_db(url: str) -> int:
    """The database number of a Redis URL (``redis://host:port/2`` -> 2; none -> 0)."""
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def role_urls(base_url: str, keys: Keys, passwords: dict[str, str]) -> dict[str, str]:
    """Each role's URL (the role's name -> redis://<prefix>-<role>:<password>@host:port/db)."""
    return {name: role_url(base_url, f"{keys.prefix}-{name}", pw) for name, pw in passwords.items()}


@dataclass(frozen=True)
class VehicleCredentials:
    name: str
    url: str  # OODIDA_REDIS_URL
    read_url: str  # OODIDA_READ_URL ("" on Redis 7: the one user reads what it may read)
    saved: bool = False  # written to the server's aclfile (ACL SAVE): it survives a restart


def add_vehicle(
    client: redis.Redis, base_url: str, keys: Keys, name: str, client_ids: Iterable[int]
) -> VehicleCredentials:
    """Create (or replace, with fresh passwords) the Redis user(s) of one vehicle on the server
    behind ``client`` (an admin's connection); its URLs, to be handed to the vehicle once."""
    ids = sorted(set(client_ids))
    try:
        db = int(client.connection_pool.connection_kwargs.get("db") or 0)
        made = vehicle_roles(keys, name, ids, selectors=has_selectors(client), db=db)
        passwords = new_passwords(role.name for role in made)
        apply(client, keys, passwords, extra=made)
        pipe = client.pipeline(transaction=True)  # the registry lists them from now on
        pipe.sadd(keys.client_index, *map(str, ids))
        pipe.hset(keys.vehicles, name, json.dumps(ids))
        pipe.execute()
        saved = persist(client)
    except redis.exceptions.RedisError as exc:
        raise OodidaError(f"cannot create the vehicle's Redis user: {exc}") from None
    urls = role_urls(base_url, keys, passwords)
    return VehicleCredentials(name, urls[made[0].name], urls[made[1].name] if len(made) > 1 else "", saved)


def revoke_vehicle(client: redis.Redis, keys: Keys, name: str) -> bool:
    """Delete a vehicle's Redis user(s); Redis closes their open connections at once. Its
    clients leave the registry (entries and index) unless another vehicle serves them.
    False when it had none."""
    user = f"{keys.prefix}-{vehicle_user_name(name)}"
    try:
        deleted = bool(client.execute_command("ACL", "DELUSER", user, f"{user}-read"))
        served = {
            k.decode() if isinstance(k, bytes) else str(k): v
            for k, v in client.hgetall(keys.vehicles).items()
        }
        mine = set(_served_ids(served.pop(name, None)))
        gone = sorted(mine - {c for other in served.values() for c in _served_ids(other)})
        pipe = client.pipeline(transaction=True)
        pipe.hdel(keys.vehicles, name)
        if gone:
            pipe.srem(keys.client_index, *map(str, gone))
            pipe.delete(*(k for c in gone for k in (keys.client_info(c), keys.client_seen(c))))
        pipe.execute()
        persist(client)
        return deleted
    except redis.exceptions.RedisError as exc:
        raise OodidaError(f"cannot delete the vehicle's Redis user: {exc}") from None


def _served_ids(raw: object) -> list[int]:
    """The client ids stored for a vehicle in ``Keys.vehicles`` (a JSON list)."""
    try:
        ids = json.loads(raw) if isinstance(raw, (bytes, str)) else []
    except ValueError:
        return []
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []


def vehicles(client: redis.Redis, keys: Keys) -> list[str]:
    """Names of the vehicles that have Redis users on the server behind ``client``."""
    head = f"{keys.prefix}-{VEHICLE_PREFIX}"
    names = [u.decode() if isinstance(u, bytes) else str(u) for u in client.execute_command("ACL", "USERS")]
    return sorted(u[len(head) :] for u in names if u.startswith(head) and not u.endswith("-read"))
