"""``oodida demo``: a local system, the paper's assignments, a replacement mid-assignment, and a
one-screen summary of what ran, on which code, and where its data and Flower are."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oodida_core.protocol.ids import format_ranges
from oodida_core.spec.model import LISTING_1_1 as PAPER_LISTING_1_1
from oodida_ops.local import LocalSystem

from .analysis import code_label
from .client import Oodida
from .results import Result

FLOWER_DEFAULT_PORT = 5555
WIDTH = 96  # the summary fits a terminal of this width
LISTING_1_1: dict[str, Any] = dict(PAPER_LISTING_1_1)

MONITORING: dict[str, Any] = {
    "name": "Speeding",
    "mode": "monitoring",
    "clients": "all",
    "signals": "speed",
    "onboard": "threshold",
    "threshold": 120,
    "direction": "above",
    "frequency": 10,
    "samples": 600,
    "iterations": 3,
}
FEDERATED: dict[str, Any] = {
    "name": "Fuel model",
    "mode": "federated",
    "clients": "all",
    "signals": ["speed", "rpm", "fuel_rate"],
    "onboard": "train",
    "offboard": "fedavg",
    "frequency": 10,
    "samples": 2000,
    "iterations": 3,
}
SWAP: dict[str, Any] = {
    "name": "Swap",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "custom",
    "offboard": "average",
    "frequency": 1,
    "samples": 600,
    "iterations": 6,
}
DEMO_V1 = """# version 1: the average speed
def custom_code(x):
    return sum(x) / len(x)
"""
DEMO_V2 = """# version 2: the share of readings above 100 km/h
import numpy as np

def custom_code(x):
    return float(np.mean(np.asarray(x) > 100.0))
"""


@dataclass(frozen=True)
class Where:
    """Where a demo's data, logs and Flower are, for the summary."""

    url: str
    data_dir: Path
    kept: bool  # False: the data directory is removed at the end
    port: int
    flower_url: str | None


def cmd_demo(args: argparse.Namespace) -> int:
    kept = args.data_dir is not None
    data_dir = Path(args.data_dir) if kept else Path(tempfile.mkdtemp(prefix="oodida-demo-"))
    started = time.monotonic()
    results: list[Result] = []
    try:
        print(f"starting a local system: embedded Redis, a cloud worker, {args.clients} simulated vehicles")
        system = LocalSystem(
            args.clients,
            data_dir=data_dir,
            loglevel="WARNING",
            flower=args.flower,
            flower_port=args.flower_port,
        )
        with system:
            flower_url = f"http://127.0.0.1:{system.flower_port}/" if args.flower else None
            print(f"ready in {time.monotonic() - started:.1f}s on {system.url}")
            if flower_url:
                print(f"Flower: {flower_url} shows the run live (it stops with the demo)")
            print()
            with Oodida(system.url, "demo", token=system.token("demo")) as o:
                results.append(_run(o, "1. The paper's Listing 1.1: average speed per vehicle", LISTING_1_1))
                results.append(_run(o, "2. Monitoring: readings above 120 km/h, 3 rounds", MONITORING))
                results.append(
                    _run(o, "3. Federated learning: fuel rate from speed and rpm, 3 rounds", FEDERATED)
                )
                results.append(_replacement(o, data_dir))
            port = int(system.url.rsplit(":", 1)[1].split("/")[0])
            where = Where(system.url, data_dir.resolve(), kept, port, flower_url)
            if flower_url and sys.stdin.isatty():
                input(f"Flower: {flower_url} shows the run; press Enter to stop the demo ")
    finally:
        if not kept:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(summary(results, args.clients, time.monotonic() - started, where))
    return 0


def _replacement(o: Oodida, workdir: Path) -> Result:
    print("4. Active-code replacement in the middle of a running assignment")
    module = workdir / "my_module.py"
    module.write_text(DEMO_V1)
    v1 = o.deploy_onboard(module).wait(timeout=30)
    print(f"   deployed my_module.py {v1.version[:19]} to clients {list(v1.accepted)}")
    a = o.submit(SWAP)
    for it in a.iterations(timeout=120):
        version = ", ".join(sorted({v[:19] for v in it.versions.values()}))
        print(f"   iteration {it.index}: fleet value {it.value:.3f} from code {version}")
        if it.index == 2:
            module.write_text(DEMO_V2)
            v2 = o.deploy_onboard(module).wait(timeout=30)
            print(
                f"   -- deployed a new my_module.py {v2.version[:19]} while the assignment runs;"
                " tasks already sent finish on the old version --"
            )
    print(f"   status: {a.status()}; no process was restarted\n")
    return a.result()


def _run(o: Oodida, title: str, spec: dict[str, Any]) -> Result:
    print(title)
    print("   spec: " + json.dumps(spec))
    result = o.submit(spec).wait(timeout=120, progress=False)
    for it in result.iterations:
        took = it.finished_at - it.started_at
        print(f"   iteration {it.index} ({took * 1000:.0f} ms, {len(it.onboard)} clients answered)")
        if spec["onboard"] == "threshold":
            for cid, value in sorted(it.onboard.items()):
                hits = value.get("speed", []) if isinstance(value, dict) else []
                top = max((h["value"] for h in hits), default=None)
                print(
                    f"     vehicle {cid}: {len(hits)} readings above 120 km/h"
                    + (f", top {top:.1f} km/h" if top is not None else "")
                )
        elif spec["onboard"] == "train":
            v = it.value or {}
            weights = ", ".join(f"{w:+.3f}" for w in v.get("weights", []))
            print(
                f"     fedavg weights [{weights}] over {v.get('n_samples')} samples, "
                f"loss {v.get('loss', 0):.4f}"
            )
        else:
            for cid, value in sorted((it.value or {}).items()):
                print(f"     vehicle {cid}: {json.dumps(value)}")
    print(f"   status: {result.status}\n")
    return result


def code_per_iteration(result: Result) -> str:
    """The code each iteration's kept results ran, runs of equal iterations merged:
    ``0-2 sha256:1a2b3c4d5e6f, 3-5 sha256:9f8e7d6c5b4a``."""
    runs: list[tuple[int, int, str]] = []
    for it in result.iterations:
        label = code_label(it)
        if runs and runs[-1][2] == label and runs[-1][1] == it.index - 1:
            runs[-1] = (runs[-1][0], it.index, label)
        else:
            runs.append((it.index, it.index, label))
    return ", ".join(f"{a}" + (f"-{b}" if b != a else "") + f" {label}" for a, b, label in runs) or "-"


def summary(results: Sequence[Result], vehicles: int, took: float, where: Where) -> str:
    """What a person wants to read at the end: what ran, on which clients and code, what was
    left out, how long it took, where the data and Flower are."""
    iterations = sum(len(r.iterations) for r in results)
    clients = sorted({c for r in results for c in r.clients})
    lines = [
        "",
        "== summary " + "=" * (WIDTH - 11),
        f"{_n(len(results), 'assignment')}, {_n(iterations, 'iteration')} on {vehicles} simulated vehicles "
        f"(clients {format_ranges(clients) or 'none'})",
        f"  {'assignment':<18} {'status':<10} {'iter.':>5} {'kept':>5} {'disc.':>5} {'miss.':>5} "
        f"{'fail.':>5} {'time':>6}  code per iteration",
    ]
    for r in results:
        its = r.iterations
        planned = int(r.spec.get("iterations") or 0)
        seconds = (r.finished_at or 0) - (r.started_at or r.created_at) if r.finished_at else 0.0
        counts = [
            sum(len(it.onboard) for it in its),
            sum(len(it.discarded) for it in its),
            sum(len(it.missing) for it in its),
            sum(len(it.failed) for it in its),
        ]
        done = f"{len(its)}/{planned or '-'}"
        row = (
            f"  {str(r.spec.get('name', r.id))[:18]:<18} {r.status:<10} {done:>5} "
            + " ".join(f"{n:>5}" for n in counts)
            + f" {seconds:>5.1f}s  "
        )
        code = code_per_iteration(r)
        lines.append(row + code if len(row + code) <= WIDTH else f"{row.rstrip()}\n{'':>8}code {code}")
    lines.append(
        _wrap(
            "  (kept: results that reached the off-board step; disc.: left out by the vote over "
            "code versions; miss.: no answer before the timeout; fail.: the task failed)",
            "   ",
        )
    )
    if where.kept:
        data = (
            f"Redis {where.url} held the results and the code; its append-only files and the logs "
            f"are kept in {where.data_dir}. To read them again: oodida up --data-dir "
            f"{where.data_dir} --port {where.port}, then oodida results ID --user demo "
            f"(ids: {', '.join(r.id for r in results)})"
        )
    else:
        data = (
            f"Redis {where.url} held the results and the code, with its files and the logs in "
            f"{where.data_dir}: removed now (keep them with oodida demo --data-dir DIR)"
        )
    lines.append(_wrap("data:   " + data, " " * 8))
    if where.flower_url:
        flower = f"{where.flower_url} showed this run's tasks and workers; it stopped with the demo"
    else:
        flower = (
            "not started; to watch a run live: oodida demo --flower\n"
            f"        or: oodida up --flower, then open http://127.0.0.1:{FLOWER_DEFAULT_PORT}/"
        )
    lines.append("Flower: " + flower if "\n" in flower else _wrap("Flower: " + flower, " " * 8))
    lines.append(f"demo finished in {took:.1f}s; every process it started is stopped")
    return "\n".join(lines)


def _n(count: int, what: str) -> str:
    return f"{count} {what}" + ("" if count == 1 else "s")


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False)


def add_demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the paper's example on a fresh local system")
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--data-dir", help="keep Redis's files and the logs there (default: a temporary dir)")
    p.add_argument(
        "--flower",
        action="store_true",
        help="also start Flower; on a terminal the demo waits for Enter before stopping it",
    )
    p.add_argument("--flower-port", type=int, default=FLOWER_DEFAULT_PORT, help="0: a free port")
    p.set_defaults(func=cmd_demo)
