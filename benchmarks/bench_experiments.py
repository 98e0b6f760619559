"""Issue 17's benchmark, side by side in one run on 100 simulated clients:

- an A/B experiment of two variants (``o.experiment``) against the same two halves run by hand
  (``bench_ab.py``; the issue's target: at most 1.1 times);
- a quorum iteration with ``min_clients`` 50 against a full iteration, 10 of the clients slow
  (``bench_quorum.py``; expected well under 1.0).

    .venv/bin/python benchmarks/bench_experiments.py [--repeats 5] [--json-dir DIR]

It measures and prints; it asserts nothing. Each part starts its own local system (an embedded
Redis, a cloud worker, 100 clients) and stops it; each ratio is of two timings taken in that
part, alternating which kind goes first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_ab  # noqa: E402
import bench_quorum  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json-dir", type=Path, help="also write ab.json and quorum.json here")
    args = parser.parse_args()
    started = time.monotonic()
    common = ["--clients", str(args.clients), "--repeats", str(args.repeats)]
    json_ab = ["--json", str(args.json_dir / "ab.json")] if args.json_dir else []
    json_q = ["--json", str(args.json_dir / "quorum.json")] if args.json_dir else []
    print("== A/B experiment against two assignments by hand")
    bench_ab.main([*common, *json_ab])
    print("\n== quorum iteration against a full iteration")
    bench_quorum.main([*common, *json_q])
    print(f"\nissue 17 benchmark: {time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
