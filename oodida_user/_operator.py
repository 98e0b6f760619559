"""The operator's commands of ``oodida``: users and their tokens, Redis ACL users per role and
per vehicle.

They talk to Redis directly and need the operator's (admin) URL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.ids import parse_id_ranges
from oodida_core.protocol.keys import Keys
from oodida_core.security import acl
from oodida_core.security.auth import UserStore
from oodida_core.security.tls import without_client_certificate
from oodida_core.settings import Settings, masked_url
from oodida_core.state import lua


def cmd_users(args: argparse.Namespace) -> int:
    """The operator's user administration, straight on Redis (needs the admin's Redis URL)."""
    settings = Settings.from_env(redis_url=args.redis_url)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        store = UserStore(client, Keys(settings.key_prefix))
        if args.action == "list":
            for entry in store.entries():
                created = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created_at))
                rotated = (
                    f", token rotated {time.strftime('%Y-%m-%d %H:%M', time.localtime(entry.rotated_at))}"
                    if entry.rotated_at
                    else ""
                )
                print(f"{entry.name}  (added {created}{rotated})")
            return 0
        if not args.name:
            raise OodidaError(f"users {args.action} needs a user name")
        if args.action == "remove":
            if not store.remove(args.name):
                raise OodidaError(f"no user {args.name!r}")
            print(f"removed {args.name}; its token no longer works", file=sys.stderr)
            return 0
        token = store.add(args.name) if args.action == "add" else store.rotate(args.name)
        print(token)
        print(
            f"# the token of {args.name}, shown once (only its hash is stored): "
            f"export OODIDA_USER={args.name} OODIDA_TOKEN=<it>",
            file=sys.stderr,
        )
        return 0
    except redis.exceptions.RedisError as exc:
        raise OodidaError(f"cannot reach Redis at {masked_url(settings.redis_url)}: {exc}") from None
    finally:
        client.close()


def cmd_acl(args: argparse.Namespace) -> int:
    """Redis ACL users per role: print them (an ACL file) or apply them to a running server."""
    settings = Settings.from_env(redis_url=args.redis_url)
    keys = Keys(settings.key_prefix)
    passwords = acl.new_passwords()
    urls = acl.role_urls(settings.redis_url, keys, passwords)
    if args.apply:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
        try:
            acl.apply(client, keys, passwords, lock_default=args.lock_default)
        except redis.exceptions.RedisError as exc:
            raise OodidaError(
                f"cannot apply the ACL rules at {masked_url(settings.redis_url)}: {exc}"
            ) from None
        finally:
            client.close()
        print("# applied; not persisted: add the lines of `oodida acl` to an aclfile to keep them")
    else:
        print("# Redis ACL users for OODIDA, in aclfile format (see README, Security); valid on Redis 6.2")
        print("# and 7 (--apply fits them to the server: on 7, Flower may also count queued messages)")
        print(acl.acl_lines([], {}, keys.prefix)[0])  # the default user, locked (acl.default_user_rules)
        for command in acl.setuser_commands(keys, passwords, db=acl.url_db(settings.redis_url)):
            print("user " + " ".join(command[2:]))
    print("# each process gets its role's URL(s) only; the passwords above are fresh and random")
    for process, (write, read) in {
        "operator (oodida users, oodida vehicles, oodida acl)": ("admin", None),
        "oodida-cloud": ("cloud", None),
        "analysts (library, oodida CLI)": ("analyst", "analyst-read"),
        "oodida-flower": ("flower", None),
    }.items():
        line = f"OODIDA_REDIS_URL={urls[write]}" + (f" OODIDA_READ_URL={urls[read]}" if read else "")
        print(f"# {process}:\n{line}")
    print("# each vehicle (oodida-edge): its own user, made by `oodida vehicles add ID`")
    return 0


def cmd_vehicles(args: argparse.Namespace) -> int:
    """A vehicle's own Redis credentials: add (printed once), revoke, list."""
    settings = Settings.from_env(redis_url=args.redis_url)
    keys = Keys(settings.key_prefix)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        if args.action == "list":
            for name in acl.vehicles(client, keys):
                print(name)
            return 0
        if not args.id:
            raise OodidaError(f"vehicles {args.action} needs a client id (or a name with --name)")
        if args.action == "revoke":
            if not acl.revoke_vehicle(client, keys, args.id):
                raise OodidaError(f"no vehicle {args.id!r}")
            print(f"revoked {args.id}: its credentials no longer work", file=sys.stderr)
            return 0
        try:
            ids = parse_id_ranges(args.clients or args.id)
        except ValueError as exc:
            raise OodidaError(f"vehicles add: {exc}") from None
        made = acl.add_vehicle(client, settings.redis_url, keys, args.id, ids)
        lua.preload(client)  # a vehicle may only EVALSHA the project's scripts
        if args.bundle:
            from oodida_ops.fleet import vehicle_bundle

            if not args.ca:
                raise OodidaError("vehicles add --bundle needs --ca DIR (the CA's ca.pem and ca.key)")
            url = with_host(made.url, args.connect) if args.connect else made.url
            where = vehicle_bundle(args.ca, args.bundle, url, made.name, args.install_path)
            print(
                f"# vehicle {made.name}: copy {where} to {args.install_path} on the vehicle "
                f"(mode 0700, its user's); it holds oodida.env, ca.pem, client.pem and client.key",
                file=sys.stderr,
            )
            return 0
        if made.url.startswith("rediss://"):  # the admin's certificate is not the vehicle's
            print(
                "# over TLS a vehicle needs its own certificate: use --bundle DIR --ca CA_DIR; "
                "the URL below has none",
                file=sys.stderr,
            )
        print(f"OODIDA_REDIS_URL={without_client_certificate(made.url)}")
        if made.read_url:
            print(f"OODIDA_READ_URL={made.read_url}")
        print(
            f"# the credentials of vehicle {made.name} (clients {args.clients or args.id}), shown once; "
            + (
                "saved in the server's aclfile"
                if made.saved
                else "NOT persisted: the server has no aclfile, a restart forgets them"
            ),
            file=sys.stderr,
        )
        return 0
    except redis.exceptions.RedisError as exc:
        raise OodidaError(f"cannot reach Redis at {masked_url(settings.redis_url)}: {exc}") from None
    finally:
        client.close()


def cmd_fleet(args: argparse.Namespace) -> int:
    """The docker fleet: make its directory of secrets (init), or register its vehicles' client
    ids in a running system (register; the compose file's one-shot ``setup`` service)."""
    from oodida_ops import fleet

    if args.action == "init":
        vehicles: dict[str, list[int]] = {}
        for item in args.vehicle or []:
            name, _, ids = item.partition("=")
            try:
                vehicles[name] = parse_id_ranges(ids or name)
            except ValueError as exc:
                raise OodidaError(f"--vehicle {item!r}: {exc}") from None
        plan = fleet.FleetPlan(
            vehicles=vehicles or fleet.FleetPlan().vehicles,
            port=args.port,
            bind=args.bind,
            hosts=tuple(dict.fromkeys(["127.0.0.1", "localhost", *(args.host or [])])),
            name=args.name,
        )
        root = fleet.init(args.dir, plan)
        print(f"# the fleet's secrets are in {root} (keep it private; ca/ca.key signs new vehicles)")
        print(f"# operator: set -a; . {root}/host/admin.env; set +a  (then oodida users add NAME)")
        print(f"# analysts: set -a; . {root}/host/analyst.env; set +a")
        return 0
    settings = Settings.from_env(redis_url=args.redis_url)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        count = fleet.register(client, Keys(settings.key_prefix), fleet.read_plan(args.dir))
    except redis.exceptions.RedisError as exc:
        raise OodidaError(f"cannot register the fleet's vehicles: {exc}") from None
    finally:
        client.close()
    print(f"registered {count} client ids", file=sys.stderr)
    return 0


def with_host(url: str, connect: str) -> str:
    """``url`` pointing at ``connect`` (``host`` or ``host:port``; the port kept if not given)."""
    parts = urlsplit(url)
    host, _, port = connect.partition(":")
    if not host or (port and not port.isdigit()):
        raise OodidaError(f"--connect {connect!r}: HOST or HOST:PORT")
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    netloc = f"{credentials}{host}:{port or parts.port or 6379}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def add_operator_commands(sub: Any) -> None:
    """Add ``users`` and ``acl`` to the subcommands of ``oodida``."""
    p = sub.add_parser("users", help="operator: add, list, remove users or rotate their tokens")
    p.add_argument("action", choices=["add", "list", "remove", "rotate"])
    p.add_argument("name", nargs="?")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("OODIDA_REDIS_URL"),
        help="Redis URL with the operator's rights (default: $OODIDA_REDIS_URL)",
    )
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("acl", help="operator: Redis ACL users per role (print, or --apply)")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("OODIDA_REDIS_URL"),
        help="the server (an admin's URL to --apply; its host and port go into the role URLs)",
    )
    p.add_argument("--apply", action="store_true", help="create the users on the server now")
    p.add_argument(
        "--lock-default",
        action="store_true",
        help="with --apply: switch off the passwordless default user (every client needs a role URL)",
    )
    p.set_defaults(func=cmd_acl)

    p = sub.add_parser("vehicles", help="operator: a vehicle's own Redis credentials (add, revoke, list)")
    p.add_argument("action", choices=["add", "revoke", "list"])
    p.add_argument("id", nargs="?", help="the vehicle: its client id (or a name, with --clients)")
    p.add_argument("--clients", help="with add: the client ids this vehicle serves, e.g. 1-20 (default: ID)")
    p.add_argument(
        "--bundle",
        metavar="DIR",
        help="with add: write what the vehicle needs (oodida.env, its own TLS certificate and key, the "
        "CA's certificate) into DIR instead of printing the URL (needs --ca)",
    )
    p.add_argument("--ca", metavar="DIR", help="with --bundle: the CA that signs the vehicle's certificate")
    p.add_argument(
        "--connect",
        metavar="HOST[:PORT]",
        help="with --bundle: where the vehicle reaches Redis (default: the admin URL's host and port); "
        "the name must be in Redis's certificate (oodida fleet init --host)",
    )
    p.add_argument(
        "--install-path",
        default="/etc/oodida",
        help="with --bundle: where the files will be on the vehicle (default: /etc/oodida)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("OODIDA_REDIS_URL"),
        help="Redis URL with the operator's rights (default: $OODIDA_REDIS_URL)",
    )
    p.set_defaults(func=cmd_vehicles)

    p = sub.add_parser("fleet", help="operator: the docker fleet's certificates and credentials")
    p.add_argument("action", choices=["init", "register"])
    p.add_argument("dir", help="init: the directory to make; register: the fleet.json it made")
    p.add_argument(
        "--vehicle",
        action="append",
        metavar="NAME[=IDS]",
        help="init: a vehicle and its client ids, e.g. 7 or fleet=101-150 (repeat; default: "
        "1, 2, 3 and fleet=101-150, as docker/compose.yaml has)",
    )
    p.add_argument("--port", type=int, default=6380, help="init: Redis's TLS port")
    p.add_argument("--bind", default="127.0.0.1", help="init: the addresses Redis listens on")
    p.add_argument(
        "--name",
        default=os.environ.get("OODIDA_FLEET_NAME") or "oodida",
        help="init: the compose project's name (default: $OODIDA_FLEET_NAME or oodida)",
    )
    p.add_argument("--host", action="append", help="init: another name or IP in Redis's certificate")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("OODIDA_REDIS_URL"),
        help="register: Redis URL with the operator's rights (default: $OODIDA_REDIS_URL)",
    )
    p.set_defaults(func=cmd_fleet)
