"""Vehicle data sources against the libraries they use, side by side in one run (issue 16):

- a 1,000,000-frame CAN log decoded through the canlog source against python-can's LogReader
  and cantools' ``decode_message`` in a plain loop over the same file (target: at most 1.3);
- an MDF4 file of 3 signals x 1,000,000 samples read through the mdf source against asammdf
  alone (target: at most 1.3);
- sustained readings per second from the fake ELM327 adapter through the obd source against
  python-OBD's own ``Async`` loop on the same adapter (target: at least 0.9).

    .venv/bin/python benchmarks/bench_vehicle_data.py [--quick] [--json FILE]

It measures and prints; it asserts nothing. Each row is a ratio of two timings taken in the
same run (this machine is shared and noisy); see each bench_data_*.py for what is timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_data_can  # noqa: E402
import bench_data_mdf  # noqa: E402
import bench_data_obd  # noqa: E402

TARGETS = {"can": ("<=", 1.3), "mdf": ("<=", 1.3), "obd": (">=", 0.9)}
UNITS = {"can": "s", "mdf": "s", "obd": "readings/s"}  # seconds: lower is better


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 frames and samples, 2 s of OBD")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    started = time.monotonic()
    stages = {
        "can": lambda: bench_data_can.run(frames=n),
        "mdf": lambda: bench_data_mdf.run(samples=n),
        "obd": lambda: bench_data_obd.run(seconds=2.0 if args.quick else 5.0),
    }
    rows: list[dict[str, object]] = []
    for stage, run in stages.items():
        for name, ours, baseline, ratio in run():
            rows.append({"stage": stage, "row": name, "ours": ours, "baseline": baseline, "ratio": ratio})
    print(f"\nvehicle data sources, {n:,} frames/samples, {time.monotonic() - started:.0f} s in all")
    print(f"{'stage':<5}  {'row':<58}  {'ours':>12}  {'baseline':>12}  {'unit':<10}  {'ratio':>6}  target")
    for r in rows:
        op, bound = TARGETS[str(r["stage"])]
        print(
            f"{r['stage']:<5}  {r['row']!s:<58}  {r['ours']:>12.4g}  {r['baseline']:>12.4g}  "
            f"{UNITS[str(r['stage'])]:<10}  {r['ratio']:>6.2f}  {op} {bound}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
