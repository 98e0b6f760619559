"""Write a recorded-style drive from the project's own simulator: the example for ``--replay``.

    python examples/drives/make_drive.py                     # examples/drives/drive.csv
    python examples/drives/make_drive.py out.csv --client 3 --seconds 3600 --frequency 10

The file has a ``timestamp`` column (seconds) and one column per signal, each reading rounded
to what a logger would keep. Replay it with ``oodida up --replay examples/drives`` (every
client shares ``drive.csv``, each from its own offset) or give each client its own file,
``<client id>.csv``, in a directory of its own (see oodida_edge/sources/csvfile.py).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from oodida_core.protocol.signals import SIGNAL_NAMES
from oodida_edge.sources.simulated import SimulatedSensors

HERE = Path(__file__).resolve().parent

# Decimals kept per signal: about a logger's resolution, and a small file.
DECIMALS = {
    "speed": 2,
    "rpm": 0,
    "fuel_rate": 3,
    "engine_temp": 2,
    "acceleration": 3,
    "battery_voltage": 3,
}


def make_drive(path: Path, client: int = 1, seconds: int = 600, frequency: int = 1) -> int:
    """Simulate ``seconds`` of client ``client``'s driving at ``frequency`` Hz into ``path``;
    returns the number of rows written."""
    rows = seconds * frequency
    data = SimulatedSensors().read(client, "recorded-drive", 0, list(SIGNAL_NAMES), rows, frequency)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["timestamp", *SIGNAL_NAMES])
        for k in range(rows):
            stamp = f"{k / frequency:.3f}".rstrip("0").rstrip(".")
            out.writerow([stamp, *(f"{data[s][k]:.{DECIMALS[s]}f}" for s in SIGNAL_NAMES)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", nargs="?", type=Path, default=HERE / "drive.csv")
    parser.add_argument("--client", type=int, default=1, help="whose simulated vehicle drives")
    parser.add_argument("--seconds", type=int, default=600, help="length of the drive")
    parser.add_argument("--frequency", type=int, default=1, help="rows per second")
    args = parser.parse_args()
    rows = make_drive(args.path, args.client, args.seconds, args.frequency)
    print(f"wrote {rows} rows to {args.path}")


if __name__ == "__main__":
    main()
