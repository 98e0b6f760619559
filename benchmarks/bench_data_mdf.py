"""Reading an MDF4 drive through the mdf source's loader against asammdf alone: the same file
of 3 signals x 1,000,000 samples (one channel group at 100 Hz), read in the same run. It
prints a table (the best of ``--repeats`` runs each, and their ratio; the target is at most
1.3); it is not a timed test.

    .venv/bin/python benchmarks/bench_data_mdf.py [--samples 1000000] [--repeats 7]

Ours: ``load_mdf`` (asammdf's ``MDF`` and one ``select`` of the mapped channels, then the
mapping's conversion, validation by ``check_series`` and the ``Drive``). asammdf alone: what
a user would write to get those three channels' samples and timestamps: ``MDF(path)``,
``select([...])`` and ``close()``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from asammdf import MDF, Signal

from oodida_edge.sources.mdf import load_mdf

CHANNELS = ("speed", "rpm", "fuel_rate")
HZ = 100


def write(path: Path, samples: int) -> Path:
    rng = np.random.default_rng(16)
    times = np.arange(samples, dtype=np.float64) / HZ
    values = {
        "speed": 80.0 + 40.0 * np.sin(times / 30.0) + rng.normal(0.0, 1.0, samples),
        "rpm": 2500.0 + 800.0 * np.sin(times / 20.0) + rng.normal(0.0, 20.0, samples),
        "fuel_rate": 6.0 + 3.0 * np.sin(times / 25.0) + rng.normal(0.0, 0.2, samples),
    }
    mdf = MDF(version="4.10")
    try:
        mdf.append([Signal(values[c], times, name=c) for c in CHANNELS], comment="bench")
        mdf.save(path, overwrite=True)
    finally:
        mdf.close()
    return path


def asammdf_alone(path: Path) -> int:
    mdf = MDF(path)
    try:
        signals = mdf.select(list(CHANNELS))
    finally:
        mdf.close()
    return sum(s.samples.size + s.timestamps.size for s in signals)


def ours(path: Path) -> int:
    drive = load_mdf(path)
    return sum(s.values.size + s.times.size for s in drive.series.values())


def timed(fn: Callable[[Path], int], path: Path) -> float:
    t0 = time.perf_counter()
    fn(path)
    return time.perf_counter() - t0


def run(samples: int = 1_000_000, repeats: int = 7) -> list[tuple[str, float, float, float]]:
    """Rows (what, ours in s, asammdf alone in s, ours / asammdf)."""
    with tempfile.TemporaryDirectory(prefix="bench-mdf-") as tmp:
        path = write(Path(tmp) / "drive.mf4", samples)
        assert ours(path) == asammdf_alone(path) == 2 * len(CHANNELS) * samples
        for _ in range(2):  # warm the page cache and the imports
            ours(path), asammdf_alone(path)
        mine, theirs = [], []
        for _ in range(repeats):  # interleaved, so both see the same machine
            mine.append(timed(ours, path))
            theirs.append(timed(asammdf_alone, path))
        a, b = min(mine), min(theirs)
        label = f"MDF4 {len(CHANNELS)} signals x {samples:,} samples ({path.stat().st_size / 1e6:.0f} MB)"
        return [(label, a, b, a / b)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = run(args.samples, args.repeats)
    print(f"{'read':<52} {'ours':>9} {'asammdf':>9} {'ratio':>6}  (target <= 1.3)")
    for label, a, b, ratio in rows:
        print(f"{label:<52} {a * 1e3:7.1f}ms {b * 1e3:7.1f}ms {ratio:6.2f}")


if __name__ == "__main__":
    main()
