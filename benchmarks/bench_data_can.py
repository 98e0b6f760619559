"""Decoding a recorded CAN log: the canlog source's loader against the loop a user would write.

    .venv/bin/python benchmarks/bench_data_can.py [--frames 1000000] [--repeats 3]

A drive of the tests' vehicle (tests/data/vehicle.dbc: three messages at 10, 20 and 100 ms
carrying seven mapped signals, plus an OBD-II request id the DBC lacks) is encoded into
``frames`` frames once, into a temporary directory, and written as a candump ``.log`` and a
Vector ``.blf`` (and, with ``--all``, ``.asc``, ``.trc`` and ``.mf4``). For each file, in the
same run, alternating:

* ours: ``load_canlog`` (oodida_edge/sources/canlog.py): python-can's reader, raw frames
  kept per mapped id, decoded per message with numpy, converted and validated into a Drive;
* baseline: ``for msg in can.LogReader(path): db.decode_message(msg.arbitration_id,
  msg.data, decode_choices=False)`` into per-signal lists of times and values (frames of ids
  the DBC lacks skipped), no validation.

Prints the best of ``repeats`` for each and the ratio ours / baseline (the issue's target: at
most 1.3). It measures; it does not assert.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import can  # noqa: E402

from oodida_edge.sources.canlog import load_canlog  # noqa: E402
from oodida_edge.sources.dbc import dbc_rules, load_dbc  # noqa: E402
from oodida_edge.sources.mapping import load_mapping  # noqa: E402
from tests.fakes.canlogs import DBC, drive_frames, write_log, write_mapping  # noqa: E402

FRAMES_PER_SECOND = 162  # of the tests' vehicle: 100 + 50 + 10 + 2 (the OBD-II id)


def baseline(path: Path, db: Any) -> int:
    """The plain loop: python-can's LogReader, cantools' decode_message per frame."""
    times: dict[str, list[float]] = {}
    values: dict[str, list[float]] = {}
    decoded_frames = 0
    for msg in can.LogReader(path):
        try:
            decoded: Any = db.decode_message(msg.arbitration_id, msg.data, decode_choices=False)
        except KeyError:
            continue
        decoded_frames += 1
        for name, value in decoded.items():
            times.setdefault(name, []).append(msg.timestamp)
            values.setdefault(name, []).append(value)
    return decoded_frames


def run(
    frames: int = 1_000_000, repeats: int = 3, suffixes: tuple[str, ...] = (".log", ".blf")
) -> list[tuple[str, float, float, float]]:
    """(file, ours s, baseline s, ratio) per log format, best of ``repeats`` each."""
    work = Path(tempfile.mkdtemp(prefix="bench-can-"))
    rows: list[tuple[str, float, float, float]] = []
    try:
        t = time.perf_counter()
        recorded = drive_frames(frames / FRAMES_PER_SECOND + 1)
        recorded_frames = recorded.frames[:frames]
        print(f"encoded {len(recorded_frames):,} frames in {time.perf_counter() - t:.1f} s", flush=True)
        db = load_dbc(DBC)
        bound = dbc_rules(db, DBC, load_mapping(write_mapping(work)))
        for suffix in suffixes:
            path = write_log(recorded_frames, work / f"drive{suffix}")
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(repeats):
                t = time.perf_counter()
                drive = load_canlog(path, bound)
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                baseline(path, db)
                theirs.append(time.perf_counter() - t)
            assert len(drive.series) == 7
            size = path.stat().st_size / 1e6
            name = f"{path.name} ({size:.0f} MB, {len(recorded_frames):,} frames)"
            rows.append((name, min(ours), min(theirs), min(ours) / min(theirs)))
            print(f"  {name}: ours {min(ours):.2f} s, baseline {min(theirs):.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--all", action="store_true", help="also .asc, .trc and .mf4")
    args = parser.parse_args()
    suffixes = (".log", ".blf", ".asc", ".trc", ".mf4") if args.all else (".log", ".blf")
    rows = run(args.frames, args.repeats, suffixes)
    print()
    print(f"{'log':<44} {'ours s':>8} {'baseline s':>11} {'ours/baseline':>14} {'µs/frame ours':>14}")
    frames = args.frames
    for name, ours, theirs, ratio in rows:
        print(f"{name:<44} {ours:>8.2f} {theirs:>11.2f} {ratio:>14.2f} {ours / frames * 1e6:>14.2f}")
    print("target: ours/baseline at most 1.3")


if __name__ == "__main__":
    main()
