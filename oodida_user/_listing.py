"""``oodida list`` (alias ``ps``) and ``oodida clients``: tables with a header line, or JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from oodida_core.protocol.errors import MessageError, OodidaError
from oodida_core.protocol.ids import format_ranges
from oodida_core.protocol.tags import describe, format_tags, parse_item
from oodida_core.protocol.text import one_line, printable
from oodida_core.protocol.wire import AssignmentRecord, ClientInfo
from oodida_core.state.store import record_from_hash

from .client import Oodida

STATUSES = ("pending", "running", "done", "failed", "cancelled")
_CHUNK = 500  # records read per round trip


def age(seconds: float) -> str:
    """How long ago, in at most two units: 42s, 5m07s, 3h12m, 2d04h."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def progress(done: int, total: int, infinity: str = "∞") -> str:
    """Iterations done out of the total; ``infinity`` for one that runs until cancelled."""
    return f"{done}/{total if total else infinity}"


def row(record: AssignmentRecord, now: float) -> dict[str, Any]:
    """What ``oodida list --json`` shows of one assignment."""
    total = int(record.spec.get("iterations") or 0)
    return {
        "id": record.id,
        "name": str(record.spec.get("name", "")),
        "status": record.status,
        "iterations_done": record.iterations_done,
        "iterations": total or None,
        "failed_iterations": record.failed_iterations,
        "created_at": record.created_at,
        "age_s": round(max(now - record.created_at, 0.0), 1),
    }


def table(rows: list[dict[str, Any]], infinity: str = "∞") -> list[str]:
    """The rows as aligned lines under a header line; names cut to 32 printable characters."""
    cells = [
        (
            r["id"],
            one_line(r["name"], 32),
            r["status"],
            progress(r["iterations_done"], r["iterations"] or 0, infinity),
            age(r["age_s"]),
            str(r["failed_iterations"]),
        )
        for r in rows
    ]
    header = ("ID", "NAME", "STATUS", "PROGRESS", "AGE", "FAILED")
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    right = {3, 4, 5}  # numbers align right
    lines = []
    for line in [header, *cells]:
        padded = (
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        lines.append("  ".join(padded).rstrip())
    return lines


def records(o: Oodida) -> list[AssignmentRecord]:
    """The user's assignments that still exist, newest first (a few round trips in all)."""
    ids = list(reversed(o.assignments()))
    out: list[AssignmentRecord] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        pipe = o.redis.pipeline(transaction=False)
        for aid in chunk:
            pipe.hgetall(o.keys.assignment(aid))
        for aid, raw in zip(chunk, pipe.execute(), strict=True):
            if not raw:  # expired or purged since
                continue
            fields = {_text(k): _text(v) for k, v in raw.items()}
            try:
                record = record_from_hash(aid, fields)
            except MessageError:
                continue
            if record.user == o.user:
                out.append(record)
    out.sort(key=lambda r: r.created_at, reverse=True)
    return out


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _infinity() -> str:
    try:
        "∞".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "inf"
    return "∞"


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise argparse.ArgumentTypeError(f"a whole number >= 0, not {text!r:.20}")
    return int(text)


def _connect(args: argparse.Namespace) -> Oodida:
    return Oodida(args.redis_url, args.user, token=args.token)


def cmd_list(args: argparse.Namespace) -> int:
    with _connect(args) as o:
        found = records(o)
    now = time.time()
    if args.status:
        found = [r for r in found if r.status == args.status]
    shown = found[: args.limit] if args.limit > 0 else found
    more = len(found) - len(shown)
    rows = [row(r, now) for r in shown]
    if args.json:
        print(json.dumps(rows, indent=2))
        if more:
            print(f"# {more} more not shown (--limit 0 lists all)", file=sys.stderr)
        return 0
    what = f"{args.status} assignment(s)" if args.status else "assignment(s)"
    if not rows:
        print(f"no {what}")
        return 0
    for line in table(rows, _infinity()):
        print(line)
    if more:
        print(f"... {more} more {what} not shown (--limit 0 lists all)")
    return 0


def tag_filters(items: list[str]) -> dict[str, list[str]] | None:
    """``--tag key=value`` options as a filter: the values of one key repeated are alternatives."""
    wanted: dict[str, list[str]] = {}
    for item in items:
        try:
            where, key, value = parse_item(item)
        except ValueError as exc:
            raise OodidaError(f"--tag: {exc}") from None
        if where is not None:
            raise OodidaError(f"--tag {item[:80]!r}: a filter is key=value, without client ids")
        if value not in wanted.setdefault(key, []):
            wanted[key].append(value)
    return wanted or None


def tagged_clients(
    items: list[str], clients: str | int | list[int]
) -> str | int | list[int] | dict[str, Any]:
    """``oodida deploy onboard --tag k=v [--clients k=N]``: the clients as a tag filter (with k)."""
    wanted = tag_filters(items)
    if wanted is None:
        return clients
    if isinstance(clients, list):
        raise OodidaError("--tag chooses clients by tags: use it alone or with --clients k=N, not ids")
    return {"tags": wanted, **({"k": clients} if isinstance(clients, int) else {})}


def cmd_clients(args: argparse.Namespace) -> int:
    wanted = tag_filters(args.tag)  # checked before anything is read
    with _connect(args) as o:
        clients = o.clients(tags=wanted)
    if args.json:
        print(json.dumps([c.to_wire() for c in clients], indent=2, default=str))
        return 0
    if args.catalogue:
        return _catalogues(clients)
    now = time.time()
    print(f"{len(clients)} live client(s)" + (f" with the tags {describe(wanted)}" if wanted else ""))
    width = max([4, *(len(format_tags(c.tags)) for c in clients)])
    if clients:
        print(f"  {'CLIENT':>6}  {'WORKER':<32}  {'LAST SEEN':>9}  {'SOURCE':<9}  {'TAGS':<{width}}  SIGNALS")
    for c in clients:
        seen = f"{now - c.last_seen:.1f}s ago"
        tags = format_tags(c.tags)
        line = f"  {c.client_id:>6}  {c.worker:<32}  {seen:>9}  {c.source or '-':<9}  {tags:<{width}}  "
        print(printable(line + ",".join(c.signals)))
    return 0


def _catalogues(clients: list[ClientInfo]) -> int:
    """Each client's catalogue: every signal it delivers, its VSS path, unit, range and origin.
    Clients with the same catalogue are listed together."""
    print(f"{len(clients)} live client(s)")
    groups: dict[tuple[object, ...], list[int]] = {}
    for c in clients:
        key: tuple[object, ...] = (c.source, c.catalogue or tuple(c.signals))
        groups.setdefault(key, []).append(c.client_id)
    for (source, _), ids in groups.items():
        c = next(x for x in clients if x.client_id == ids[0])
        print()
        print(printable(f"client(s) {format_ranges(ids)}: source {source or 'unknown'}"))
        if not c.catalogue:
            print(printable(f"  signals {','.join(c.signals)} (no catalogue: an older vehicle)"))
            continue
        rows = [["SIGNAL", "VSS PATH", "UNIT", "RANGE", "FROM"]] + [
            [e.signal, e.vss, e.unit, f"{e.low:g} to {e.high:g}", e.origin] for e in c.catalogue
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for r in rows:
            print(printable("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()))
    return 0


def add_listing_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "list",
        aliases=["ps"],
        parents=[common],
        help="your assignments, newest first",
        description="Your assignments, newest first: id, name, status, iterations done out of the "
        "total (no total for one that runs until cancelled), age and failed iterations.",
    )
    p.add_argument("--status", choices=STATUSES, help="only assignments with this status")
    p.add_argument("--limit", type=_count, default=20, help="show at most N (default 20; 0: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("clients", parents=[common], help="list live clients and the signals each delivers")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--catalogue",
        "--catalog",
        action="store_true",
        help="each vehicle's catalogue: every signal with its VSS path, unit, range and where it comes from",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only clients with this tag (repeatable: every key must match; one key repeated "
        "matches any of its values)",
    )
    p.set_defaults(func=cmd_clients)
