"""Every source has the same conformance test: the same recorded drive in, the same
per-iteration averages out within the resampling tolerance.

One drive (the simulator's client 3 at 20 Hz for 60 s: standing, then pulling away at about
30 s) is fed to every source: a CSV recording, an MDF4 file, a CAN log in each format
python-can writes (encoded with examples/vehicle-data/vehicle.dbc), its frames played in real
time on python-can's ``virtual`` bus, and a fake ELM327 adapter answering OBD-II queries with
the drive's values.
The one test body reads a few iterations from each and compares every signal's average with
the drive's own average over the same time window:

- recorded sources replay windows known exactly from the offset arithmetic (a client's own
  file: iteration ``i`` covers ``(i * samples + k) / frequency`` seconds, looping after the
  60 s period); the tolerance is the format's quantisation (none for CSV and MDF, the DBC's
  scale for CAN logs, whose messages are also sent at 10, 20 and 100 ms rather than 50 ms);
- live sources read a wall-clock window; the drive's window is where the fake was in its
  playback then. The tolerance is the quantisation plus a timing slack: the average must lie
  within the range of the drive's averages over windows shifted by up to ``slack`` seconds
  (CAN: 0.1 s, the player thread's and the device thread's latency; OBD-II: 0.2 s, its five
  PIDs being polled one after the other). Reading 1 s late fails it: the windows cover the car
  pulling away.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from oodida_core.protocol.signals import SIGNAL_NAMES
from oodida_edge.sources.base import Source
from oodida_edge.sources.csvfile import ReplaySensors
from oodida_edge.sources.mapping import default_mapping
from oodida_edge.sources.mdf import mdf_source
from tests.fakes.mdffiles import channels_of, simulated_drive, write_mdf

FloatArray = npt.NDArray[np.float64]

HZ = 20
SECONDS = 60.0
TIMES, VALUES = simulated_drive(client=3, frequency=HZ, seconds=SECONDS)
PERIOD = SECONDS  # the drive loops: its span plus one step
CLIENT = 1
LIVE_FROM = 29.0  # drive seconds where live playback starts: just before the car pulls away


def drive_at(signal: str, t: FloatArray) -> FloatArray:
    """The drive's ``signal`` at drive times ``t`` (seconds; linear between its samples, looping)."""
    return np.interp(t, TIMES, VALUES[signal], period=PERIOD)


def true_range(signal: str, at: FloatArray, slack: float) -> tuple[float, float]:
    """The lowest and highest average of ``signal`` over the window ``at`` shifted by up to
    ``slack`` seconds either way."""
    shifts = np.linspace(-slack, slack, 41) if slack else np.zeros(1)
    means = [float(drive_at(signal, at + d).mean()) for d in shifts]
    return min(means), max(means)


@dataclass
class Fed:
    """One source fed with the drive, and how to know which window of it a read covers."""

    source: Source
    samples: int
    frequency: int
    iterations: Sequence[int]
    delivers: tuple[str, ...]  # the drive's signals this kind of source carries
    window: Callable[[int, float], FloatArray]  # (iteration, wall time the read began) -> drive times
    quantum: dict[str, float] = field(default_factory=dict)  # absolute tolerance per signal
    slack: float = 0.0  # seconds of timing uncertainty of a live window


def recorded_window(samples: int, frequency: int) -> Callable[[int, float], FloatArray]:
    """A client's own file starts at offset 0: iteration i covers (i * samples + k) / frequency."""

    def window(iteration: int, began: float) -> FloatArray:
        return (iteration * samples + np.arange(samples, dtype=np.float64)) / frequency

    return window


# 8 Hz: samples fall on the drive's 20 Hz points and between them (resampling is exercised);
# 40 samples are 5 s; iteration 12 starts at 60 s: the drive has looped to its start.
REC_SAMPLES, REC_HZ = 40, 8
REC_ITERATIONS = (0, 1, 5, 6, 7, 11, 12, 13)


def feed_csv(tmp: Path, stack: contextlib.ExitStack) -> Fed:
    header = ["timestamp", *SIGNAL_NAMES]
    rows = [
        ",".join([repr(float(t)), *(repr(float(VALUES[s][i])) for s in SIGNAL_NAMES)])
        for i, t in enumerate(TIMES)
    ]
    (tmp / f"{CLIENT}.csv").write_text("\n".join([",".join(header), *rows]) + "\n")
    return Fed(
        ReplaySensors(tmp),
        REC_SAMPLES,
        REC_HZ,
        REC_ITERATIONS,
        SIGNAL_NAMES,
        recorded_window(REC_SAMPLES, REC_HZ),
    )


def feed_mdf(tmp: Path, stack: contextlib.ExitStack) -> Fed:
    write_mdf(tmp / f"{CLIENT}.mf4", channels_of(TIMES, VALUES, start=1_765_000_000.0))
    source = mdf_source(tmp, default_mapping())
    return Fed(
        source, REC_SAMPLES, REC_HZ, REC_ITERATIONS, SIGNAL_NAMES, recorded_window(REC_SAMPLES, REC_HZ)
    )


# -- CAN: the drive encoded into frames with the tests' DBC ----------------------------------
CAN_START = 1_765_000_000.0  # unix time of a log's first frame
CAN_PERIODS = {"EngineData": 0.01, "VehicleDynamics": 0.02, "BodyStatus": 0.1}  # as a car sends them
CAN_SIGNALS = ("speed", "rpm", "fuel_rate", "engine_temp", "acceleration", "battery_voltage")
# the DBC's scale of each signal: what a frame can carry (examples/vehicle-data/vehicle.dbc)
CAN_QUANTUM = {
    "speed": 0.01,
    "rpm": 0.25,
    "fuel_rate": 0.05,
    "engine_temp": 1.0,
    "acceleration": 0.001,
    "battery_voltage": 0.01,
}


def drive_frames(start: float, until: float) -> list[tuple[float, int, bool, bytes]]:
    """(drive time, id, extended, data) of the frames sent from ``start`` to ``until`` drive
    seconds, in time order, each carrying the drive's values at its time."""
    import cantools

    from tests.fakes.canlogs import CARRIED, DBC

    db = cantools.database.load_file(str(DBC))
    assert isinstance(db, cantools.database.can.Database)
    frames = []
    for name, period in CAN_PERIODS.items():
        message = db.get_message_by_name(name)
        carried = {sig: sid for sid, (msg, sig) in CARRIED.items() if msg == name and sid in VALUES}
        steps = np.arange(np.ceil(start / period), np.ceil(until / period), dtype=np.float64)
        times: FloatArray = np.multiply(steps, period, dtype=np.float64)
        columns = {sig: drive_at(sid, times) for sig, sid in carried.items()}
        for k, t in enumerate(times):
            values: dict[str, float] = {s.name: 0 for s in message.signals}
            values.update({sig: float(column[k]) for sig, column in columns.items()})
            data = message.encode(values, strict=False)
            frames.append((float(t), message.frame_id, message.is_extended_frame, bytes(data)))
    frames.sort(key=lambda f: f[0])
    return frames


def feed_canlog(suffix: str) -> Callable[[Path, contextlib.ExitStack], Fed]:
    def feed(tmp: Path, stack: contextlib.ExitStack) -> Fed:
        import can

        from oodida_edge.sources.canlog import canlog_source
        from oodida_edge.sources.mapping import load_mapping
        from tests.fakes.canlogs import DBC, write_log, write_mapping

        messages = [
            can.Message(timestamp=CAN_START + t, arbitration_id=i, is_extended_id=x, data=d, channel=0)
            for t, i, x, d in drive_frames(0.0, SECONDS)
        ]
        write_log(messages, tmp / f"{CLIENT}{suffix}")
        source = canlog_source(tmp, DBC, load_mapping(write_mapping(tmp)))
        window = recorded_window(REC_SAMPLES, REC_HZ)
        return Fed(source, REC_SAMPLES, REC_HZ, REC_ITERATIONS, CAN_SIGNALS, window, CAN_QUANTUM)

    return feed


# -- live sources: a short wall-clock playback from LIVE_FROM on -----------------------------
LIVE_SAMPLES, LIVE_HZ = 20, 10  # 2 s a read
LIVE_ITERATIONS = (0, 1)


class Player(threading.Thread):
    """Plays the drive's frames on a python-can ``virtual`` bus in real time, from LIVE_FROM."""

    def __init__(self, channel: str, seconds: float) -> None:
        super().__init__(name="conformance-can-player", daemon=True)
        import can

        self.frames = drive_frames(LIVE_FROM, LIVE_FROM + seconds)
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.message = can.Message
        self.started = 0.0  # the wall time of drive time LIVE_FROM
        self.halt = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        self.started = time.time()
        self.ready.set()
        for t, ident, extended, data in self.frames:
            delay = self.started + (t - LIVE_FROM) - time.time()
            if delay > 0 and self.halt.wait(delay):
                return
            self.bus.send(self.message(arbitration_id=ident, is_extended_id=extended, data=data))

    def stop(self) -> None:
        self.halt.set()
        self.join(5.0)
        self.bus.shutdown()


def live_window(started: Callable[[], float]) -> Callable[[int, float], FloatArray]:
    """Where the fake's playback was while a read ran: from LIVE_FROM at ``started()`` on."""

    def window(iteration: int, began: float) -> FloatArray:
        return LIVE_FROM + (began - started()) + np.arange(LIVE_SAMPLES, dtype=np.float64) / LIVE_HZ

    return window


def warm_up(source: Source, signals: Sequence[str]) -> None:
    """A short read, so the device thread runs and readings flow before the measured ones."""
    source.read(CLIENT, "warm-up", 0, list(signals), 5, LIVE_HZ)


def feed_can_bus(tmp: Path, stack: contextlib.ExitStack) -> Fed:
    from oodida_edge.sources.canbus import can_source
    from oodida_edge.sources.mapping import load_mapping
    from tests.fakes.canlogs import DBC, write_mapping

    channel = f"conformance-{id(tmp)}"
    seconds = 4.0 + len(LIVE_ITERATIONS) * LIVE_SAMPLES / LIVE_HZ + 4.0
    source = can_source("virtual", channel, [CLIENT], DBC, load_mapping(write_mapping(tmp)), {})
    stack.callback(source.close)
    player = Player(channel, seconds)
    stack.callback(player.stop)
    player.start()
    assert player.ready.wait(5.0)
    warm_up(source, CAN_SIGNALS)
    window = live_window(lambda: player.started)
    return Fed(source, LIVE_SAMPLES, LIVE_HZ, LIVE_ITERATIONS, CAN_SIGNALS, window, CAN_QUANTUM, 0.1)


OBD_SIGNALS = ("speed", "rpm", "fuel_rate", "engine_temp", "battery_voltage")  # no PID for acceleration
# what the OBD-II formulas carry: whole km/h and degC, 1/4 rpm, 1/20 l/h, mV
OBD_QUANTUM = {"speed": 1.0, "rpm": 0.25, "fuel_rate": 0.05, "engine_temp": 1.0, "battery_voltage": 0.001}


def feed_obd(tmp: Path, stack: contextlib.ExitStack) -> Fed:
    from oodida_edge.sources.obd import obd_source
    from tests.fakes.elm327 import FakeDrive, FakeElm327

    first = round(LIVE_FROM * HZ)
    drive = FakeDrive({s: (TIMES[first:], VALUES[s][first:]) for s in OBD_SIGNALS})
    fake = FakeElm327(drive).start()  # its clock: drive time LIVE_FROM at fake.started
    stack.callback(fake.close)
    source = obd_source(fake.path, [CLIENT], default_mapping(), protocol="6")
    stack.callback(source.close)
    warm_up(source, OBD_SIGNALS)
    window = live_window(lambda: fake.started)
    return Fed(source, LIVE_SAMPLES, LIVE_HZ, LIVE_ITERATIONS, OBD_SIGNALS, window, OBD_QUANTUM, 0.2)


FEEDS: dict[str, Callable[[Path, contextlib.ExitStack], Fed]] = {
    "csv": feed_csv,
    "mdf": feed_mdf,
    **{f"canlog{suffix}": feed_canlog(suffix) for suffix in (".log", ".asc", ".blf", ".trc", ".mf4")},
    "can-virtual": feed_can_bus,
    "obd-elm327": feed_obd,
}


@pytest.fixture(params=list(FEEDS))
def fed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fed]:
    before = set(threading.enumerate())
    with contextlib.ExitStack() as stack:
        feeding = FEEDS[request.param](tmp_path, stack)
        stack.callback(feeding.source.close)
        yield feeding
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, f"threads left running: {left}"


def test_every_source_gives_the_drives_per_iteration_averages(fed: Fed) -> None:
    source = fed.source
    source.check([CLIENT])
    offered = {e.signal for e in source.catalogue(CLIENT)}
    assert offered >= set(fed.delivers)
    signals = list(fed.delivers)
    for iteration in fed.iterations:
        began = time.time()
        got = source.read(CLIENT, "conformance", iteration, signals, fed.samples, fed.frequency)
        at = fed.window(iteration, began)
        for signal in signals:
            assert got[signal].shape == (fed.samples,)
            low, high = true_range(signal, at, fed.slack)
            q = fed.quantum.get(signal, 1e-9 * max(1.0, abs(low)))
            mean = float(got[signal].mean())
            assert low - q <= mean <= high + q, (
                f"{source.kind} iteration {iteration} {signal}: average {mean:.6g}, the drive's "
                f"{low:.6g} to {high:.6g} (+/- {q:g})"
            )
