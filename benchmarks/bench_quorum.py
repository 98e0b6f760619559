"""Quorum (issue 17): one iteration over 100 simulated clients, 10 of them slow, with
``min_clients`` 50 against the same iteration waiting for every client, side by side in one run.

    .venv/bin/python benchmarks/bench_quorum.py [--clients 100] [--slow 10] [--min-clients 50]
        [--delay 2.0] [--repeats 5] [--json out.json]

One local system (an embedded ``redis-server`` on a free port, a cloud worker): clients
1..90 simulated at full speed, clients 91..100 slowed down by ``OODIDA_EDGE_DELAY`` (every
task of theirs waits ``--delay`` seconds before it reads, as a slow vehicle would). Each
repeat times ``submit(spec).wait()`` of a one-iteration ``average`` assignment (signal
``speed``, 100 samples, ``collect`` off board, all clients) twice: with ``min_clients`` and
without, alternating which goes first. Before each measurement every answer of the previous
one has arrived (the slow clients are idle again), so neither waits for the other's backlog.
It prints the median and the spread of each, their ratio (quorum / full), and how many
clients the quorum iterations left out as late; the issue expects the ratio well under 1.0.
Every process it starts is stopped when it ends, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from bench_core import machine

from oodida_core.protocol.keys import header_task_id
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

SPEC: dict[str, Any] = {
    "name": "bench quorum",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "average",
    "offboard": "collect",
    "frequency": 1,
    "samples": 100,
    "iterations": 1,
    "timeout": 120,
}


def settle(admin: redis.Redis, aid: str, clients: list[int], timeout: float = 120.0) -> None:
    """Wait until every client answered iteration 0 of ``aid`` (late answers included)."""
    keys = [f"celery-task-meta-{header_task_id(aid, 0, c)}" for c in clients]
    deadline = time.monotonic() + timeout
    while sum(admin.exists(k) for k in keys) < len(keys):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_quorum: the answers to {aid} did not all arrive within {timeout:.0f}s")
        time.sleep(0.1)


def run_one(o: Oodida, admin: redis.Redis, clients: list[int], quorum: int | None) -> dict[str, Any]:
    spec = {**SPEC, **({"min_clients": quorum} if quorum else {})}
    began = time.perf_counter()
    result = o.submit(spec).wait(timeout=120, progress=False)
    took = time.perf_counter() - began
    (it,) = result.iterations
    if result.status != "done":
        raise SystemExit(f"bench_quorum: the assignment ended {result.status}: {result.error}")
    settle(admin, result.id, clients)
    return {
        "seconds": took,
        "iteration": it.finished_at - it.started_at,
        "kept": len(it.onboard),
        "late": len(it.late),
        "ended_by": it.ended_by,
    }


def summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in runs]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--slow", type=int, default=10, help="the last SLOW clients are slow")
    parser.add_argument("--min-clients", type=int, default=50)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds each slow client's task waits")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 0 < args.slow < args.clients or not 0 < args.min_clients <= args.clients - args.slow:
        parser.error("need 0 < --slow < --clients and 0 < --min-clients <= the fast clients")
    fast = args.clients - args.slow
    clients = list(range(1, args.clients + 1))
    with tempfile.TemporaryDirectory(prefix="bench-quorum-") as tmp:
        system = LocalSystem(0, data_dir=Path(tmp), loglevel="WARNING")
        with system:
            system.start_edge("fast", f"1-{fast}")
            system.start_edge("slow", f"{fast + 1}-{args.clients}", delay=args.delay)
            system.wait_ready(clients=args.clients, timeout=120)
            admin = redis.Redis.from_url(system.url)
            runs: dict[str, list[dict[str, Any]]] = {"full": [], "quorum": []}
            with Oodida(system.url, user="bench", token=system.token("bench")) as o:
                run_one(o, admin, clients, args.min_clients)  # warm-up, both kinds
                run_one(o, admin, clients, None)
                for rep in range(args.repeats):
                    order = ("quorum", "full") if rep % 2 == 0 else ("full", "quorum")
                    for kind in order:
                        quorum = args.min_clients if kind == "quorum" else None
                        runs[kind].append(run_one(o, admin, clients, quorum))
            admin.close()
    full, quorum = summary(runs["full"], "seconds"), summary(runs["quorum"], "seconds")
    ratio = quorum["median"] / full["median"]
    late = summary(runs["quorum"], "late")
    print(
        f"quorum benchmark: {args.clients} clients, {args.slow} slow ({args.delay:g} s a task), "
        f"min_clients {args.min_clients}, {args.repeats} repeats (median, min-max), submit to result"
    )
    print("| iteration | seconds | min | max | ended by | clients kept |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for name, s, kind in (("full (every client)", full, "full"), ("quorum", quorum, "quorum")):
        kept = statistics.median(r["kept"] for r in runs[kind])
        ended = ", ".join(sorted({r["ended_by"] for r in runs[kind]}))
        print(f"| {name} | {s['median']:.3f} | {s['min']:.3f} | {s['max']:.3f} | {ended} | {kept:g} |")
    print(f"ratio quorum / full: {ratio:.3f} (the issue: well under 1.0)")
    print(
        f"late clients per quorum iteration: median {late['median']:g} "
        f"(min {late['min']:g}, max {late['max']:g})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"args": vars(args) | {"json": str(args.json)}, "machine": machine(), "runs": runs}
        figures |= {"full": full, "quorum": quorum, "ratio": ratio}
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
