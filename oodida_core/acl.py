"""Redis ACL users per role, so that holding one role's password is not holding the system's.

Redis 6.2 (the embedded one) grants key patterns to every command a user may run: a user who
may read a key may also write it. So a role that must only read some keys gets two Redis
users: the role's own, which writes (and reads) what the role writes, and ``<role>-read``,
limited to read commands, for what it only reads. A process takes the first as its
``OODIDA_REDIS_URL`` and the second as ``OODIDA_READ_URL``.

=============  ================================================================================
admin          everything (the operator: ``oodida users``, ``oodida acl``, ``LocalSystem``)
cloud          every key and command but the dangerous ones (it is the trusted part)
edge           its queues, Celery's results and chords, the registry, on-board pointers,
               deployment verdicts; task events and remote control channels
edge-read      read only: code sources and assignment state; never the users' token hashes
analyst        publish to the ``cloud`` queue and task events, nothing else (no reads at all)
analyst-read   read only: assignments, results, deployments, the registry, the cloud's replies
=============  ================================================================================

Nobody but admin and cloud can read ``Keys.users``; nobody but admin and cloud can write code.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import redis

from .errors import OodidaError
from .keys import CLIENT_QUEUES, CLOUD_QUEUE, Keys

ROLES = ("admin", "cloud", "edge", "edge-read", "analyst", "analyst-read")

# Celery's and kombu's own keys and channels on the Redis transport and result backend.
CELERY_RESULTS = ("celery-task-meta-*", "celery-taskset-meta-*")
KOMBU_KEYS = ("_kombu.*", "unacked", "unacked_index", "unacked_mutex", "*.celery.pidbox")
EVENT_CHANNELS = "/*.celeryev/*"  # task events (kombu's fanout prefix is /<db>.)
# Remote control (revoke, shutdown, ...): workers PSUBSCRIBE the pattern "/<db>.celery.pidbox",
# which Redis 6.2 matches literally against the allowed patterns, hence one per database.
CONTROL_CHANNELS = tuple(f"/{db}.celery.pidbox" for db in range(16))
CONNECT = "+ping +client|setinfo +client|setname"  # what clients send on connecting
READ_COMMANDS = f"+@read -@dangerous +multi +exec +discard +evalsha +eval +script|load {CONNECT}"


@dataclass(frozen=True)
class Role:
    name: str
    keys: tuple[str, ...]
    channels: tuple[str, ...]
    commands: str

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
            *(f"&{c}" for c in self.channels),
            *self.commands.split(),
        ]


def roles(keys: Keys) -> dict[str, Role]:
    """Every role's rules for the key layout ``keys``."""
    return {
        "admin": Role("admin", ("*",), ("*",), "+@all"),
        "cloud": Role("cloud", ("*",), ("*",), f"+@all -@dangerous +info {CONNECT}"),
        "edge": Role(
            "edge",
            (
                CLIENT_QUEUES,
                CLOUD_QUEUE,  # the chord callback: the last answer of an iteration sends it
                *KOMBU_KEYS,
                *CELERY_RESULTS,
                keys.clients,
                keys.heartbeats,
                keys.onboard_pointers,
                keys.deployed_at("*"),
                keys.deployment("*"),
                keys.every_pending_installs,
            ),
            (EVENT_CHANNELS, *CONTROL_CHANNELS, "celery-task-meta-*"),  # results are announced
            f"+@all -@dangerous +info {CONNECT}",
        ),
        "edge-read": Role("edge-read", (keys.code("*"), keys.assignment("*")), (), READ_COMMANDS),
        "analyst": Role(
            "analyst",
            (CLOUD_QUEUE, "_kombu.*"),
            (EVENT_CHANNELS,),
            f"+lpush +llen +sadd +publish +multi +exec {CONNECT}",
        ),
        "analyst-read": Role(
            "analyst-read",
            (
                keys.assignment("*"),
                keys.user_assignments("*"),
                keys.deployment("*"),
                keys.clients,
                keys.heartbeats,
                keys.cloud_workers,
                keys.reply("*"),
                "celery-taskset-meta-*",  # how many clients answered (progress bars)
            ),
            (),
            READ_COMMANDS,
        ),
    }


def new_passwords() -> dict[str, str]:
    """A fresh random password per role."""
    return {role: secrets.token_urlsafe(24) for role in ROLES}


def role_url(base_url: str, user: str, password: str) -> str:
    """``base_url`` with ``user:password`` as its credentials."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def setuser_commands(keys: Keys, passwords: dict[str, str]) -> list[list[str]]:
    """``ACL SETUSER`` commands (as argument lists) for every role that has a password."""
    return [
        ["ACL", "SETUSER", role.user(keys.prefix), *role.rules(passwords[name])]
        for name, role in roles(keys).items()
        if name in passwords
    ]


def apply(client: redis.Redis, keys: Keys, passwords: dict[str, str], lock_default: bool = False) -> None:
    """Create or reset the role users on the server behind ``client`` (which must be allowed to
    run ACL); with ``lock_default``, switch the passwordless ``default`` user off (after this,
    every connection needs a role's URL)."""
    try:
        for command in setuser_commands(keys, passwords):
            client.execute_command(*command)
        if lock_default:
            client.execute_command("ACL", "SETUSER", "default", "off")
    except redis.exceptions.ResponseError as exc:
        raise OodidaError(f"the Redis server refused the ACL rules: {exc}") from None


def role_urls(base_url: str, keys: Keys, passwords: dict[str, str]) -> dict[str, str]:
    """Each role's URL (the role's name -> redis://oodida-<role>:<password>@host:port/db)."""
    all_roles = roles(keys)
    return {name: role_url(base_url, all_roles[name].user(keys.prefix), pw) for name, pw in passwords.items()}
