"""Tasks of one vehicle run concurrently (issue 12 item 4): the edge's lanes against Celery's solo.

    .venv/bin/python benchmarks/bench_isolation.py [--quick] [--json out.json]

Two layouts of ``oodida-edge``, the same code, one Redis server (one db each), in one run:
*lanes* (the default: built-in tasks in the consumer, custom tasks in lanes of their own,
oodida_edge/pool.py) and *solo* (``OODIDA_EDGE_POOL=celery-solo``: every task on Celery's solo
pool, as before issue 12). Rows, each printed as lanes, solo and lanes / solo:

1. scale: a one-iteration ``average`` assignment over 1,000 clients (4 edge processes), both
   fleets up at once, the order alternating per repeat (BENCHMARKS.md's row 1 at N=1000).
2. custom: a one-iteration ``custom`` assignment (a one-line mean) over 100 of those clients,
   spread over the 4 processes: the hand-off of a custom task to a lane.
3. isolation: on a fleet of 20 clients in one process, user A's module spins until the time
   limit (2 s) on every client; user B's one-iteration ``average`` over the same clients (timeout
   10 s) next to it, against B alone: B's time and how many clients answered.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_core import machine
from bench_fleet import db_url, redis_server

from oodida_ops.local import LocalSystem
from oodida_user import Oodida

LAYOUTS = {"lanes": "solo", "solo": "celery-solo"}  # column: OODIDA_EDGE_POOL
MEAN = "def custom_code(x):\n    return sum(x) / len(x)\n"
SPIN = "def custom_code(x):\n    while len(x) == 150:\n        pass\n    return len(x)\n"


def spec(clients: list[int] | str, onboard: str = "average", samples: int = 1000, timeout: int = 60) -> dict:
    return {
        "name": f"bench {onboard}",
        "mode": "measurement",
        "clients": clients,
        "signals": "speed",
        "onboard": onboard,
        "offboard": "collect",
        "frequency": 1,
        "samples": samples,
        "iterations": 1,
        "timeout": timeout,
    }


@contextlib.contextmanager
def fleet(url: str, pool: str, n: int, data: Path, processes: int | None = None) -> Iterator[LocalSystem]:
    """A LocalSystem whose edge processes run ``pool`` (read from the environment at start)."""
    saved = {k: os.environ.get(k) for k in ("OODIDA_EDGE_POOL", "OODIDA_CODE_TIME_LIMIT")}
    os.environ["OODIDA_EDGE_POOL"] = pool
    os.environ["OODIDA_CODE_TIME_LIMIT"] = "2"
    try:
        system = LocalSystem(n, redis_url=url, data_dir=data, processes=processes, startup_timeout=180)
        system.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield system
    finally:
        system.stop()


def analyst(system: LocalSystem, name: str) -> Oodida:
    return Oodida(system.url, user=name, token=system.token(name), settings=system.settings)


def timed(o: Oodida, s: dict) -> tuple[float, int]:
    """Seconds from submit to the result, and how many clients answered."""
    t0 = time.perf_counter()
    result = o.submit(s).wait(timeout=600, progress=False)
    took = time.perf_counter() - t0
    return took, len(result.iterations[0].onboard) if result.iterations else 0


def deploy(o: Oodida, tmp: Path, name: str, source: str, clients: list[int] | str = "all") -> None:
    path = tmp / name
    path.write_text(source)
    o.deploy_onboard(path, clients=clients).wait(timeout=300)


def scale_and_custom(server_url: str, repeats: int, tmp: Path) -> dict[str, Any]:
    spread = list(range(1, 1001, 10))
    out: dict[str, Any] = {"scale": {k: [] for k in LAYOUTS}, "custom": {k: [] for k in LAYOUTS}}
    with contextlib.ExitStack() as stack:
        users: dict[str, Oodida] = {}
        for db, (column, pool) in enumerate(LAYOUTS.items()):
            system = stack.enter_context(fleet(f"{server_url}/{db}", pool, 1000, tmp / column))
            users[column] = stack.enter_context(analyst(system, "bench"))
            deploy(users[column], tmp, "mean.py", MEAN, spread)
            timed(users[column], spec("all"))  # warm-up
            timed(users[column], spec(spread, "custom"))
        columns = list(LAYOUTS)
        for r in range(repeats):
            for column in columns[r % 2 :] + columns[: r % 2]:
                out["scale"][column].append(timed(users[column], spec("all"))[0])
                out["custom"][column].append(timed(users[column], spec(spread, "custom"))[0])
    return out


def isolation(server_url: str, tmp: Path) -> dict[str, Any]:
    clients = list(range(1, 21))
    out: dict[str, Any] = {}
    for db, (column, pool) in enumerate(LAYOUTS.items(), start=2):
        with (
            fleet(f"{server_url}/{db}", pool, 20, tmp / f"iso-{column}", processes=1) as system,
            analyst(system, "runaway") as a,
            analyst(system, "builtin") as b,
        ):
            deploy(a, tmp, "spin.py", SPIN, clients)
            timed(b, spec(clients, timeout=10))  # warm-up
            alone = timed(b, spec(clients, timeout=10))
            a.submit(spec(clients, "custom", samples=150, timeout=120))
            time.sleep(1.0)  # A's first tasks are running
            beside = timed(b, spec(clients, timeout=10))
            out[column] = {"alone_s": alone[0], "beside_s": beside[0], "answered": beside[1], "of": 20}
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_report(report: dict[str, Any]) -> None:
    print(f"\nmachine: {report['machine']}")
    print(f"\n{'row':<44} {'lanes':>9} {'solo':>9} {'lanes/solo':>11}")
    for row, label in (
        ("scale", "1. average, 1000 clients (median s)"),
        ("custom", "2. custom, 100 of them (median s)"),
    ):
        if row in report:
            lanes, solo = median(report[row]["lanes"]), median(report[row]["solo"])
            print(f"{label:<44} {lanes:9.3f} {solo:9.3f} {lanes / solo:11.2f}")
            runs = ", ".join(f"{c} {' '.join(f'{v:.2f}' for v in report[row][c])}" for c in LAYOUTS)
            print(f"{'':<44} runs: {runs}")
    if "isolation" in report:
        iso = report["isolation"]
        print("3. B's average over 20 clients of one process, A's runaway custom code on all of them:")
        for column in LAYOUTS:
            r = iso[column]
            print(
                f"   {column:<6} alone {r['alone_s']:.3f} s, beside A {r['beside_s']:.3f} s "
                f"({r['beside_s'] / r['alone_s']:.1f} x), {r['answered']}/{r['of']} clients answered"
            )


def run(repeats: int, rows: set[str]) -> dict[str, Any]:
    """Rows ``scale`` (1 and 2) and ``isolation`` (3), on a Redis server of their own."""
    report: dict[str, Any] = {"machine": machine()}
    tmp = Path(tempfile.mkdtemp(prefix="oodida-iso-"))
    try:
        with redis_server(tmp, "redis") as server:
            url = db_url(server, 0).rsplit("/", 1)[0]
            if "scale" in rows:
                print(f"1+2. 1000 clients, lanes and solo: 1 warm-up + {repeats} runs each ...", flush=True)
                report.update(scale_and_custom(url, repeats, tmp))
            if "isolation" in rows:
                print("3. isolation: 20 clients, one process, lanes then solo ...", flush=True)
                report["isolation"] = isolation(url, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--repeats", type=int, help="timed runs of rows 1 and 2 per column")
    parser.add_argument("--rows", default="scale,isolation", help="scale (rows 1 and 2), isolation (row 3)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    report = run(args.repeats or (3 if args.quick else 7), {r.strip() for r in args.rows.split(",")})
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
