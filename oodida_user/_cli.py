"""``oodida``: the analyst's and operator's command line (private; the library is the API)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from types import FrameType
from typing import Any

from oodida_core.protocol.errors import OodidaError, SpecError
from oodida_core.protocol.ids import parse_id_ranges
from oodida_core.settings import Settings
from oodida_core.spec.model import spec_json_schema
from oodida_ops.health import check_health
from oodida_ops.local import LocalSystem

from ._experiment_cli import add_experiment_parser
from ._listing import add_listing_parsers, tagged_clients
from ._operator import add_operator_commands
from ._waiting import (
    CANCEL_S,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    cancel_after_interrupt,
    interrupted_line,
    read_spec_file,
    show_warning,
    shown,
    waited,
)
from ._waiting import print_json as _print_json
from ._waiting import say as _say
from .assignment import AssignmentInterrupted
from .canary_rules import Guard
from .client import Oodida
from .demo import add_demo_parser


def _connect(args: argparse.Namespace) -> Oodida:
    return Oodida(args.redis_url, args.user, token=args.token)


# -- analyst commands ------------------------------------------------------------------------
def cmd_submit(args: argparse.Namespace) -> int:
    spec = read_spec_file(args.spec)
    with _connect(args) as o:
        a = o.submit(spec, wait_accepted=False)
        try:
            a.wait_accepted(o.accept_timeout)
            print(a.id, flush=True)
            if not args.wait:
                return 0
            return waited(a, args)
        except AssignmentInterrupted as exc:
            if not args.cancel_on_interrupt or exc.ended:
                raise
            return cancel_after_interrupt(a)


def cmd_status(args: argparse.Namespace) -> int:
    with _connect(args) as o:
        result = o.assignment(args.id).result()
        if args.json:
            record = {k: v for k, v in result.to_dict().items() if k != "iterations"}
            counts = [c.to_dict() for c in result.counts]
            _print_json({**record, "counts": counts, "totals": result.totals()})
        else:
            _say(result.summary())
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    with _connect(args) as o:
        a = o.assignment(args.id)
        return waited(a, args) if args.wait else shown(a.result(), args.json)


def cmd_cancel(args: argparse.Namespace) -> int:
    with _connect(args) as o:
        result = o.assignment(args.id).cancel()
        print(f"{result.id}: {result.status} after {len(result.iterations)} iteration(s)")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    with _connect(args) as o:
        deleted = o.purge(args.id)
        print(f"{args.id}: purged ({deleted} key(s) deleted)")
    return 0


def _clients_arg(text: str | None) -> str | int | list[int]:
    if text is None or text == "all":
        return "all"
    if text.startswith("k="):
        k = text[2:]
        if not (k.isascii() and k.isdigit() and len(k) <= 18 and int(k) > 0):
            raise OodidaError(f"--clients k=N: N must be a positive whole number, not {k!r:.40}")
        return int(k)
    try:
        return parse_id_ranges(text)
    except ValueError as exc:
        raise OodidaError(f"--clients: {exc}") from None


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.role == "offboard" and args.clients is not None:
        raise OodidaError("--clients is for on-board code; off-board code runs in the cloud")
    clients = tagged_clients(args.tag, _clients_arg(args.clients))  # checked before anything is sent
    if args.role == "offboard" and args.tag:
        raise OodidaError("--tag is for on-board code; off-board code runs in the cloud")
    if args.canary is not None or args.guard is not None:
        return cmd_canary(args, clients)
    with _connect(args) as o:
        if args.role == "offboard":
            deployment = o.deploy_offboard(args.file)
        else:
            deployment = o.deploy_onboard(args.file, clients=clients)
        report = deployment.wait(timeout=args.timeout)
        _say(report)
    return 0 if not report.rejected else 3


def cmd_canary(args: argparse.Namespace, clients: Any) -> int:
    """``deploy onboard FILE --canary 0.1 --guard GUARD.json``: the report; exit 5 if rolled back."""
    if args.role != "onboard" or args.canary is None or args.guard is None:
        raise OodidaError("a canary deployment is on-board and needs both --canary and --guard GUARD.json")
    text = args.canary.strip()
    try:
        canary: float | int = int(text) if text.isascii() and text.isdigit() else float(text)
    except ValueError:
        raise OodidaError(
            f"--canary: a fraction such as 0.1 or a count such as 2, not {text!r:.40}"
        ) from None
    try:
        with open(args.guard, encoding="utf-8") as fh:
            guard = Guard.from_json(json.load(fh))
    except OSError as exc:
        raise OodidaError(f"--guard {args.guard}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:  # not JSON (SpecError is raised as it is)
        if isinstance(exc, SpecError):
            raise
        raise OodidaError(f"--guard {args.guard}: not a JSON file ({exc})") from None
    with _connect(args) as o:
        report = o.deploy_onboard(
            args.file, clients, canary=canary, guard=guard, seed=args.seed, deploy_timeout=args.timeout
        )
        _say(report)
    return 0 if report.promoted else 5


def cmd_rollback(args: argparse.Namespace) -> int:
    with _connect(args) as o:
        if args.role == "offboard":
            _say(f"off-board code now: {o.rollback_offboard() or 'none'}")
        else:
            wanted = _clients_arg(args.clients)
            if not isinstance(wanted, list):
                raise OodidaError("rollback onboard needs --clients with ids, e.g. --clients 1-3,7")
            for cid, version in o.rollback_onboard(wanted).items():
                _say(f"client {cid}: on-board code now {version or 'none'}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    _print_json(spec_json_schema())
    return 0


# -- operator commands -----------------------------------------------------------------------
class _Stop:
    def __init__(self) -> None:
        self.event = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def cmd_up(args: argparse.Namespace) -> int:
    stop = _Stop()
    system = LocalSystem(
        args.clients,
        redis_url=args.redis_url,
        port=args.port,
        data_dir=args.data_dir,
        processes=args.processes,
        flower=args.flower,
        flower_port=args.flower_port,
        flower_auth=args.flower_auth,
        realtime=args.realtime,
        replay=args.replay,
        source=args.source,
        dbc=args.dbc,
        mapping=args.mapping,
        tags=args.tag,
        loglevel=args.loglevel,
        auth=False if args.no_auth else None,
        acl=args.acl,
        tls=args.tls,
    )
    with system:
        if system.acl:
            print(f"OODIDA_REDIS_URL={system.url_for('analyst')}", flush=True)
            print(f"OODIDA_READ_URL={system.url_for('analyst-read')}", flush=True)
            print(f"# the operator's URL (oodida users): {system.url}", file=sys.stderr, flush=True)
        else:
            print(f"OODIDA_REDIS_URL={system.url}", flush=True)
        if system.auth:
            print(f"OODIDA_USER={args.user}\nOODIDA_TOKEN={system.token(args.user)}", flush=True)
        else:
            print(
                "# authentication is OFF (--no-auth): anyone who reaches Redis acts as any user",
                file=sys.stderr,
                flush=True,
            )
        if args.flower:
            login = (
                f"login {args.flower_auth.partition(':')[0]!r}"
                if args.flower_auth
                else "no login; its HTTP API needs --flower-auth USER:PASSWORD"
            )
            print(f"# Flower: {system.flower_url} ({login})", file=sys.stderr, flush=True)
        print(
            f"# {args.clients} client(s) and a cloud worker running; logs in {system.log_dir}; "
            "Ctrl-C stops everything",
            file=sys.stderr,
            flush=True,
        )
        while not stop.event.wait(1.0):
            for name, proc in system.procs.items():
                if proc.poll() is not None:
                    print(f"# {name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                    stop.event.set()
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    try:
        clients = parse_id_ranges(args.clients) if args.clients else []
    except ValueError as exc:
        raise OodidaError(f"--clients: {exc}") from None
    anything = clients or args.cloud or args.flower or args.jail
    settings = Settings.from_env(redis_url=args.redis_url)
    health = check_health(
        settings,
        jail=args.jail,
        clients=clients,
        cloud_here=args.cloud,
        any_cloud=not anything,
        flower_url=args.flower,
    )
    _say(health.report())
    return 0 if health.healthy else 1


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oodida",
        description="OODIDA fleet analytics on Celery and Redis",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url",
        default=os.environ.get("OODIDA_REDIS_URL"),
        help="broker URL (default: $OODIDA_REDIS_URL)",
    )
    common.add_argument("--user", default=os.environ.get("OODIDA_USER"), help="user (default: $OODIDA_USER)")
    common.add_argument(
        "--token",
        default=os.environ.get("OODIDA_TOKEN"),
        help="the user's token from `oodida users add` (default: $OODIDA_TOKEN)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="run a whole local system until interrupted")
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--port", type=int, help="port of the embedded Redis (default: a free one)")
    p.add_argument("--redis-url", default=None, help="use this Redis instead of an embedded one")
    p.add_argument("--flower", action="store_true", help="also start Flower")
    p.add_argument("--flower-port", type=int, default=5555, help="0: a free port")
    p.add_argument(
        "--flower-auth",
        metavar="USER:PASSWORD",
        default=os.environ.get("FLOWER_BASIC_AUTH") or None,
        help="Flower's basic-auth login, which also opens its HTTP API (default: $FLOWER_BASIC_AUTH)",
    )
    p.add_argument("--data-dir", default=".oodida")
    p.add_argument("--processes", type=int, help="edge worker processes for the fleet")
    p.add_argument("--realtime", action="store_true", help="clients take samples/frequency seconds")
    p.add_argument(
        "--replay",
        metavar="DIR|FILE",
        help="clients replay recorded drives: a CSV file they share (each from its own offset), or "
        "a directory of <client id>.csv files with drive.csv for the rest (e.g. examples/drives)",
    )
    p.add_argument(
        "--source",
        metavar="KIND[:TARGET]",
        help="where the clients' readings come from (oodida-edge --source): sim, csv:PATH, mdf:PATH, "
        "canlog:PATH, obd:PORT or can:INTERFACE:CHANNEL; {client} in a PORT or CHANNEL is the client id",
    )
    p.add_argument("--dbc", metavar="FILE", help="the DBC file of a CAN source (canlog:, can:)")
    p.add_argument(
        "--mapping",
        metavar="FILE",
        help="the signal mapping (YAML or JSON) of an mdf, canlog, obd or can source",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="[IDS:]KEY=VALUE",
        help="a tag of the simulated clients (repeatable, as oodida-edge --tag): powertrain=ev for "
        "all, 1-3:powertrain=ev for clients 1-3 only",
    )
    p.add_argument("--loglevel", default="WARNING")
    p.add_argument(
        "--user",
        default=os.environ.get("OODIDA_USER") or "analyst",
        help="issue a token for this user and print it (default: $OODIDA_USER or analyst)",
    )
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="the cloud accepts any user without a token (OODIDA_AUTH=off; development only)",
    )
    p.add_argument(
        "--acl",
        action="store_true",
        help="a Redis user per role (cloud, edge, analyst); print the analyst's URLs",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="Redis listens with TLS only, every process verifies it and presents a certificate of "
        "its own from a private CA in DATA_DIR/tls (implies --acl; needs a TLS-built redis-server "
        "on PATH and pip install 'oodida[tls]')",
    )
    p.set_defaults(func=cmd_up)

    add_demo_parser(sub)

    p = sub.add_parser(
        "submit",
        parents=[common],
        help="submit an assignment spec (JSON file)",
        description="Submit an assignment, print its id, wait for it and show its result. Ctrl-C "
        "stops the waiting, not the assignment (unless --cancel-on-interrupt).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec")
    p.add_argument("--no-wait", dest="wait", action="store_false", help="print the id and return")
    p.add_argument("--timeout", type=float)
    p.add_argument(
        "--cancel-on-interrupt",
        action="store_true",
        help=f"Ctrl-C cancels the assignment (waiting at most {CANCEL_S:.0f}s; Ctrl-C again stops that)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_submit)

    for name, func, text in (
        ("status", cmd_status, "an assignment's status"),
        ("results", cmd_results, "an assignment's results"),
        ("cancel", cmd_cancel, "cancel an assignment"),
        ("purge", cmd_purge, "delete an ended assignment's data now"),
    ):
        kind: dict[str, Any] = {}
        if name == "results":
            kind = {"epilog": EXIT_CODES, "formatter_class": argparse.RawDescriptionHelpFormatter}
        p = sub.add_parser(name, parents=[common], help=text, **kind)
        p.add_argument("id")
        if name not in ("cancel", "purge"):
            p.add_argument("--json", action="store_true")
        if name == "results":
            p.add_argument("--wait", action="store_true", help="wait until it ended")
            p.add_argument("--timeout", type=float)
        p.set_defaults(func=func)

    p = sub.add_parser("deploy", parents=[common], help="deploy a custom module")
    p.add_argument("role", choices=["onboard", "offboard"])
    p.add_argument("file")
    p.add_argument("--clients", help="all (default), ids like 1-3,7, or k=N for N live clients")
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only the live clients with this tag (repeatable, as in oodida clients; with --clients k=N: N)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the clients' answers")
    p.add_argument("--canary", help="deploy to this fraction (0.1) or count (2) of them first, then decide")
    p.add_argument("--guard", metavar="GUARD.json", help="the canary's guard: spec and rules (see README)")
    p.add_argument("--seed", type=int, help="the seed of the canary's random group (default: drawn)")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("rollback", parents=[common], help="restore your previous custom module")
    p.add_argument("role", choices=["onboard", "offboard"])
    p.add_argument("--clients", help="ids like 1-3,7 (onboard)")
    p.set_defaults(func=cmd_rollback)

    add_listing_parsers(sub, common)
    add_experiment_parser(sub, common)

    p = sub.add_parser(
        "health",
        help="exit 0 if what is named is live (default: Redis and a cloud worker), else 1",
    )
    p.add_argument("--redis-url", default=None, help="broker URL (default: $OODIDA_REDIS_URL)")
    p.add_argument("--clients", metavar="IDS", help="these clients are live, e.g. 1 or 1-50")
    p.add_argument("--cloud", action="store_true", help="a cloud worker on this host is live")
    p.add_argument("--flower", metavar="URL", help="Flower at URL answers its /healthcheck")
    p.add_argument(
        "--jail",
        action="store_true",
        help="this host's jail for custom code reaches OODIDA_JAIL (and its level)",
    )
    p.set_defaults(func=cmd_health)

    add_operator_commands(sub)

    p = sub.add_parser("schema", help="print the JSON Schema of an assignment spec")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    warnings.showwarning = show_warning
    try:
        code = args.func(args)
    except SpecError as exc:
        _say(f"oodida: {exc}", file=sys.stderr)
        code = 2
    except OodidaError as exc:
        _say(f"oodida: {exc}", file=sys.stderr)
        code = 1
    except AssignmentInterrupted as exc:
        print(interrupted_line(exc), file=sys.stderr)
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("oodida: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into head and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
