"""Recorded vehicle data from examples/drives/drive.csv, to try the data sources without a car:

    python examples/vehicle-data/make_data.py DIR

writes ``DIR/drive.blf`` (a Vector BLF CAN log, its frames encoded with vehicle.dbc) and
``DIR/drive.mf4`` (an ASAM MDF4 file, one channel per signal), each with an outside air
temperature beyond the six built-in signals. Then, for example:

    oodida up --source canlog:DIR/drive.blf --dbc examples/vehicle-data/vehicle.dbc \\
        --mapping examples/vehicle-data/mapping.yaml
    oodida up --source mdf:DIR/drive.mf4 --mapping examples/vehicle-data/mapping.yaml

It needs the can and mdf extras: pip install 'oodida[can,mdf]'.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DRIVE = HERE.parent / "drives" / "drive.csv"
# DBC message -> its signals (DBC name -> column of drive.csv), and its period in seconds
MESSAGES = {
    "EngineData": ({"EngineSpeed": "rpm", "FuelRate": "fuel_rate", "EngineCoolantTemp": "engine_temp"}, 0.01),
    "VehicleDynamics": ({"VehicleSpeed": "speed", "LongitudinalAccel": "acceleration"}, 0.02),
    "BodyStatus": ({"BatteryVoltage": "battery_voltage", "AmbientTemp": "ambient"}, 0.1),
}
START = 1_765_000_000.0  # the log's first frame, unix time


def read_drive() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    table = np.genfromtxt(DRIVE, delimiter=",", names=True)
    names = table.dtype.names or ()
    times = table["timestamp"] - table["timestamp"][0]
    columns = {name: np.asarray(table[name], dtype=np.float64) for name in names if name != "timestamp"}
    columns["ambient"] = 12.0 + 4.0 * np.sin(times / 300.0)
    return times, columns


def write_blf(path: Path, times: np.ndarray, columns: dict[str, np.ndarray]) -> int:
    import can
    import cantools

    db = cantools.database.load_file(str(HERE / "vehicle.dbc"))
    frames = []
    for message_name, (signals, period) in MESSAGES.items():
        message = db.get_message_by_name(message_name)
        for t in np.arange(0.0, times[-1], period):
            values = {s: float(np.interp(t, times, columns[c])) for s, c in signals.items()}
            values.update({s.name: 0 for s in message.signals if s.name not in values})
            data = message.encode(values, strict=False)
            frames.append(
                can.Message(
                    timestamp=START + t,
                    arbitration_id=message.frame_id,
                    data=data,
                    is_extended_id=message.is_extended_frame,
                )
            )
    frames.sort(key=lambda m: m.timestamp)
    with can.BLFWriter(str(path)) as writer:
        for frame in frames:
            writer.on_message_received(frame)
    return len(frames)


def write_mf4(path: Path, times: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    from asammdf import MDF, Signal

    mdf = MDF(version="4.10")
    try:
        mdf.append([Signal(samples=v, timestamps=times, name=name) for name, v in columns.items()])
        mdf.save(path, overwrite=True)
    finally:
        mdf.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    times, columns = read_drive()
    frames = write_blf(args.directory / "drive.blf", times, columns)
    write_mf4(args.directory / "drive.mf4", times, columns)
    print(f"wrote {args.directory / 'drive.blf'} ({frames:,} frames) and {args.directory / 'drive.mf4'}")


if __name__ == "__main__":
    main()
