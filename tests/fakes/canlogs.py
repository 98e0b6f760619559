"""CAN logs for tests: a recorded drive encoded into frames with the project's example DBC
(examples/vehicle-data/vehicle.dbc), written with python-can's writers in every format it
reads, and broken variants (a gap, a timestamp going back, a frame too short, a DBC that does not parse).

``drive_frames`` gives the frames and, decoded back from the very same frames with cantools
frame by frame, the ``truth``: per signal id, the frame times and the physical values a
correct decoder must return (the DBC's scaling quantises the drive's values).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import can
import cantools
import numpy as np
import numpy.typing as npt

from oodida_core.protocol.signals import SIGNAL_NAMES
from oodida_edge.sources.simulated import SimulatedSensors

FloatArray = npt.NDArray[np.float64]

DBC = Path(__file__).resolve().parents[2] / "examples" / "vehicle-data" / "vehicle.dbc"
AMBIENT = "Vehicle.Exterior.AirTemperature"
START = 1_765_000_000.0  # unix time of a drive's first frame
SUFFIXES = (".log", ".asc", ".blf", ".trc", ".mf4")

# signal id -> (message, DBC signal); the mapping file MAPPING_YAML says the same.
CARRIED = {
    "rpm": ("EngineData", "EngineSpeed"),
    "fuel_rate": ("EngineData", "FuelRate"),
    "engine_temp": ("EngineData", "EngineCoolantTemp"),
    "speed": ("VehicleDynamics", "VehicleSpeed"),
    "acceleration": ("VehicleDynamics", "LongitudinalAccel"),
    "battery_voltage": ("BodyStatus", "BatteryVoltage"),
    AMBIENT: ("BodyStatus", "AmbientTemp"),
}
PERIODS = {"EngineData": 0.01, "VehicleDynamics": 0.02, "BodyStatus": 0.1}  # seconds
NOISE_ID = 0x7DF  # an OBD-II request id the DBC does not define, 3 bytes: never decoded

MAPPING_YAML = f"""\
signals:
  Vehicle.Speed:
    dbc: VehicleDynamics.VehicleSpeed
  rpm:
    dbc: EngineSpeed
  fuel_rate:
    dbc: FuelRate
  engine_temp:
    dbc: EngineCoolantTemp
  acceleration:
    dbc: LongitudinalAccel
  battery_voltage:
    dbc: BatteryVoltage
  {AMBIENT}:
    dbc: AmbientTemp
    unit: degC
    range: [-40, 60]
"""


def write_mapping(directory: Path, text: str = MAPPING_YAML, name: str = "mapping.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Recorded:
    frames: list[can.Message]
    truth: dict[str, tuple[FloatArray, FloatArray]]  # signal id -> (unix times, values)


def recorded_drive(seconds: float, client: int = 1, hz: int = 100) -> dict[str, FloatArray]:
    """A simulated drive at ``hz``: the six built-in signals and an ambient temperature."""
    n = round(seconds * hz)
    drive = SimulatedSensors().read(client, "drive", 0, list(SIGNAL_NAMES), n, hz)
    t = np.arange(n) / hz
    drive[AMBIENT] = 12.0 + 4.0 * np.sin(t / 30.0)
    return drive


def drive_frames(seconds: float, client: int = 1, start: float = START, noise: bool = True) -> Recorded:
    """The frames a vehicle sends during ``seconds`` of its recorded drive, in time order."""
    db: Any = cantools.database.load_file(str(DBC))
    hz = 100
    drive = recorded_drive(seconds, client, hz)
    frames: list[can.Message] = []
    for name, period in PERIODS.items():
        message = db.get_message_by_name(name)
        step = round(period * hz)
        carried = {sig: sid for sid, (msg, sig) in CARRIED.items() if msg == name}
        for k in range(0, drive["speed"].size, step):
            values: dict[str, float] = {s.name: 0.0 for s in message.signals}
            values.update({sig: float(drive[sid][k]) for sig, sid in carried.items()})
            data = message.encode(values, strict=False)
            frames.append(
                can.Message(
                    timestamp=start + k / hz + 0.0003 * (step % 7),  # messages are not in phase
                    arbitration_id=message.frame_id,
                    is_extended_id=message.is_extended_frame,
                    data=data,
                    channel=0,
                )
            )
    if noise:
        for k in range(0, drive["speed"].size, 50):
            frames.append(
                can.Message(
                    timestamp=start + k / hz + 0.0071,
                    arbitration_id=NOISE_ID,
                    is_extended_id=False,
                    data=b"\x02\x01\x0d",
                    channel=0,
                )
            )
    frames.sort(key=lambda m: m.timestamp)
    return Recorded(frames, decode_truth(db, frames))


def decode_truth(db: Any, frames: Sequence[can.Message]) -> dict[str, tuple[FloatArray, FloatArray]]:
    """What cantools decodes from ``frames``, frame by frame: signal id -> (times, values)."""
    out: dict[str, tuple[list[float], list[float]]] = {sid: ([], []) for sid in CARRIED}
    by_name = {(msg, sig): sid for sid, (msg, sig) in CARRIED.items()}
    for frame in frames:
        try:
            message = db.get_message_by_frame_id(frame.arbitration_id)
        except KeyError:
            continue
        decoded: Any = message.decode(bytes(frame.data), decode_choices=False)
        for sig, value in decoded.items():
            sid = by_name.get((message.name, sig))
            if sid is not None:
                out[sid][0].append(frame.timestamp)
                out[sid][1].append(float(value))
    return {sid: (np.array(t), np.array(v)) for sid, (t, v) in out.items()}


def write_log(frames: Sequence[can.Message], path: Path) -> Path:
    """``frames`` written with python-can's writer for ``path``'s suffix."""
    writers = {
        ".log": can.CanutilsLogWriter,
        ".asc": can.ASCWriter,
        ".blf": can.BLFWriter,
        ".trc": can.TRCWriter,
        ".mf4": can.MF4Writer,
    }
    writer = writers[path.suffix](path)
    try:
        for frame in frames:
            writer.on_message_received(frame)
    finally:
        writer.stop()
    return path


# Playing a drive on a live bus ------------------------------------------------------------


def play(
    bus: can.BusABC,
    frames: Sequence[can.Message],
    stop: threading.Event | None = None,
    sent: list[tuple[float, can.Message]] | None = None,
) -> list[tuple[float, can.Message]]:
    """Send ``frames`` on ``bus`` at their recorded pace (from now on), each stamped with the
    host time it is sent at; (send time, frame) of each frame sent before ``stop`` is appended
    to ``sent`` as it is sent, and returned."""
    sent = [] if sent is None else sent
    t0 = frames[0].timestamp
    began = time.time()
    for frame in frames:
        due = began + (frame.timestamp - t0)
        while True:
            left = due - time.time()
            if stop is not None and stop.is_set():
                return sent
            if left <= 0:
                break
            time.sleep(min(left, 0.05))
        now = time.time()
        bus.send(_copy(frame, timestamp=now))
        sent.append((now, frame))
    return sent


def expected_at(sent: Sequence[tuple[float, can.Message]]) -> dict[str, tuple[FloatArray, FloatArray]]:
    """The drive as sent: per signal id, (send times, values cantools decodes)."""
    db: Any = cantools.database.load_file(str(DBC))
    stamped = [_copy(frame, timestamp=at) for at, frame in sent]
    return decode_truth(db, stamped)


def main(argv: Sequence[str] | None = None) -> None:
    """A player process: ``python tests/fakes/canlogs.py INTERFACE CHANNEL SECONDS CLIENT OUT``
    plays SECONDS of CLIENT's drive on the bus, then writes what it sent (JSON) to OUT."""
    interface, channel, seconds, client, out = (argv if argv is not None else sys.argv[1:])[:5]
    recorded = drive_frames(float(seconds), int(client), noise=True)
    options: dict[str, Any] = {"sleep_after_open": 0} if interface == "slcan" else {}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with can.Bus(interface=interface, channel=channel, **options) as bus:
        Path(out + ".ready").write_text("ready", encoding="utf-8")
        sent = play(bus, recorded.frames, stop)
    expected = expected_at(sent)
    Path(out).write_text(
        json.dumps({sid: [t.tolist(), v.tolist()] for sid, (t, v) in expected.items()}), encoding="utf-8"
    )


# Broken logs -------------------------------------------------------------------------------


def index_of(frames: Sequence[can.Message], arbitration_id: int, nth: int) -> int:
    """The position in ``frames`` of the ``nth`` frame (from 0) with ``arbitration_id``."""
    seen = -1
    for i, frame in enumerate(frames):
        if frame.arbitration_id == arbitration_id:
            seen += 1
            if seen == nth:
                return i
    raise IndexError(f"fewer than {nth + 1} frames with id 0x{arbitration_id:X}")


def with_gap(frames: Sequence[can.Message], after: float, gap: float) -> list[can.Message]:
    """The frames, with no frame for ``gap`` seconds from ``after`` s into the drive on."""
    t0 = frames[0].timestamp
    return [m if m.timestamp - t0 < after else _copy(m, timestamp=m.timestamp + gap) for m in frames]


def with_time_back(frames: Sequence[can.Message], position: int, back: float = 0.5) -> list[can.Message]:
    """The frames, the one at ``position`` stamped ``back`` seconds before its time."""
    out = list(frames)
    out[position] = _copy(out[position], timestamp=out[position].timestamp - back)
    return out


def with_short_frame(frames: Sequence[can.Message], position: int, size: int = 2) -> list[can.Message]:
    """The frames, the one at ``position`` cut to ``size`` data bytes."""
    out = list(frames)
    out[position] = _copy(out[position], data=bytes(out[position].data[:size]), dlc=size)
    return out


def broken_dbc(path: Path, line: int = 16) -> Path:
    """The tests' DBC with a syntax error on ``line`` (a signal without its colon)."""
    lines = DBC.read_text(encoding="utf-8").splitlines()
    assert lines[line - 1].startswith(" SG_ "), lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(" : ", " ", 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _copy(m: can.Message, **changes: object) -> can.Message:
    fields = {
        "timestamp": m.timestamp,
        "arbitration_id": m.arbitration_id,
        "is_extended_id": m.is_extended_id,
        "data": bytes(m.data),
        "dlc": m.dlc,
        "channel": m.channel,
    }
    fields.update(changes)
    return can.Message(**fields)  # type: ignore[arg-type]


__all__ = [
    "AMBIENT",
    "CARRIED",
    "DBC",
    "MAPPING_YAML",
    "NOISE_ID",
    "PERIODS",
    "START",
    "SUFFIXES",
    "Recorded",
    "broken_dbc",
    "decode_truth",
    "drive_frames",
    "expected_at",
    "index_of",
    "main",
    "play",
    "recorded_drive",
    "with_gap",
    "with_short_frame",
    "with_time_back",
    "write_log",
    "write_mapping",
]


if __name__ == "__main__":
    main()
