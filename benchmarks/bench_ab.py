"""A/B experiment (issue 17): ``o.experiment`` of two custom variants on 100 simulated clients
against the same A/B test run by hand, side by side in one run.

    .venv/bin/python benchmarks/bench_ab.py [--clients 100] [--iterations 1] [--repeats 5]
        [--json out.json]

One local system (an embedded ``redis-server`` on a free port, a cloud worker, N simulated
clients). Each repeat times, from the first call to the statistics in hand:

* experiment: ``o.experiment(spec, {"A": a.py, "B": b.py}, seed=rep).wait()``: list the live
  clients, split them at random into two halves, deploy each module to its half (both sent, then
  both waited for), submit one assignment per variant (both sent, then both accepted), wait for
  both, and compute the per-iteration and overall statistics (Welch; scipy).
* by hand: what an analyst writes without it, done as fast as the library allows: list the live
  clients, split them into halves, ``deploy_onboard`` A to one half and B to the other (both
  sent, then both waited for), ``submit`` one assignment per half (both sent, then both
  accepted), wait for both, and take each half's mean (no test).

Every run deploys fresh modules (a new version each time, as a real A/B test would), so no
deployment is a no-op. The two kinds alternate which goes first; one warm-up run of each is not
counted. It prints the median and the spread of each and their ratio (experiment / by hand);
the issue's target is at most 1.1. Every process it starts is stopped when it ends.
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

from bench_core import machine

from oodida_ops.local import LocalSystem
from oodida_user import Oodida

SPEC: dict[str, Any] = {
    "name": "bench A/B",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 10,
    "samples": 100,
    "iterations": 1,
    "timeout": 120,
}
MODULE = "# {tag}\ndef custom_code(x):\n    return sum(x) / len(x) + {plus}\n"


def modules(folder: Path, tag: str) -> tuple[Path, Path]:
    a, b = folder / f"a_{tag}.py", folder / f"b_{tag}.py"
    a.write_text(MODULE.format(tag=tag, plus=0))
    b.write_text(MODULE.format(tag=tag, plus=5))
    return a, b


def by_hand(o: Oodida, spec: dict[str, Any], a: Path, b: Path) -> dict[str, Any]:
    began = time.perf_counter()
    ids = sorted(c.client_id for c in o.clients())
    half_a, half_b = ids[: len(ids) // 2], ids[len(ids) // 2 :]
    deploys = [o.deploy_onboard(a, clients=half_a), o.deploy_onboard(b, clients=half_b)]
    reports = [d.wait(timeout=120) for d in deploys]
    runs = [
        o.submit({**spec, "clients": half_a}, wait_accepted=False),
        o.submit({**spec, "clients": half_b}, wait_accepted=False),
    ]
    for run in runs:
        run.wait_accepted(o.accept_timeout)
    results = [run.wait(timeout=300, progress=False) for run in runs]
    means = [statistics.mean(v for it in r.iterations for v in it.onboard.values()) for r in results]
    took = time.perf_counter() - began
    if any(r.status != "done" for r in results) or any(rep.rejected or rep.pending for rep in reports):
        raise SystemExit(f"bench_ab: by hand did not complete: {[r.status for r in results]}")
    return {"seconds": took, "difference": means[1] - means[0]}


def experiment(o: Oodida, spec: dict[str, Any], a: Path, b: Path, seed: int) -> dict[str, Any]:
    began = time.perf_counter()
    result = o.experiment(spec, {"A": a, "B": b}, seed=seed, deploy_timeout=120).wait(timeout=300)
    took = time.perf_counter() - began
    if set(result.statuses.values()) != {"done"} or result.excluded:
        raise SystemExit(f"bench_ab: the experiment did not complete: {result.statuses} {result.excluded}")
    c = result.overall.comparisons[0]
    return {"seconds": took, "difference": c.difference, "pvalue": c.pvalue}


def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    values = [r["seconds"] for r in runs]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.clients < 2 or args.iterations < 1 or args.repeats < 1:
        parser.error("need --clients >= 2, --iterations >= 1 and --repeats >= 1")
    spec = {**SPEC, "iterations": args.iterations}
    runs: dict[str, list[dict[str, Any]]] = {"experiment": [], "by hand": []}
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        folder = Path(tmp)
        with LocalSystem(args.clients, data_dir=folder / "system", loglevel="WARNING") as system:
            system.wait_ready(clients=args.clients, timeout=120)
            with Oodida(system.url, user="bench", token=system.token("bench")) as o:
                experiment(o, spec, *modules(folder, "warm-e"), seed=0)  # warm-up, both kinds
                by_hand(o, spec, *modules(folder, "warm-h"))
                for rep in range(args.repeats):
                    order = ("experiment", "by hand") if rep % 2 == 0 else ("by hand", "experiment")
                    for kind in order:
                        a, b = modules(folder, f"{rep}-{kind.replace(' ', '')}")
                        run = (
                            experiment(o, spec, a, b, rep) if kind == "experiment" else by_hand(o, spec, a, b)
                        )
                        runs[kind].append(run)
    exp, hand = summary(runs["experiment"]), summary(runs["by hand"])
    ratio = exp["median"] / hand["median"]
    print(
        f"A/B benchmark: {args.clients} clients in two halves, {args.iterations} iteration(s), "
        f"{args.repeats} repeats (median, min-max), from the first call to the comparison in hand"
    )
    print("| A/B test | seconds | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for name, s in (("o.experiment (deploy, 2 assignments, statistics)", exp), ("by hand", hand)):
        print(f"| {name} | {s['median']:.3f} | {s['min']:.3f} | {s['max']:.3f} |")
    print(f"ratio experiment / by hand: {ratio:.3f} (the issue: at most 1.1)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"args": vars(args) | {"json": str(args.json)}, "machine": machine(), "runs": runs}
        figures |= {"experiment": exp, "by_hand": hand, "ratio": ratio}
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
