"""Live OBD-II readings per second: our obd source (ObdDevice in a DeviceThread filling the
LiveSource buffer) against python-OBD's own ``obd.Async`` loop, on the same fake ELM327
adapter (tests/fakes/elm327.py, on a pseudo-terminal), watching the same five commands,
measured in turn in the same run (three rounds each, the median kept). It prints a
table; it is not a timed test.

    .venv/bin/python benchmarks/bench_data_obd.py [--seconds 5]

Rows: the car answering at once (the loop's own cost) and after 5 ms a request (a realistic
CAN ECU and adapter), each against ``Async(delay_cmds=0)`` (the same round-robin without a
pause; target ratio at least 0.9) and against ``Async``'s default, which sleeps 0.25 s after
each round of commands.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import obd  # noqa: E402

from oodida_edge.sources.obd import obd_source  # noqa: E402
from tests.fakes.elm327 import FakeDrive, FakeElm327  # noqa: E402

COMMANDS = ("SPEED", "RPM", "COOLANT_TEMP", "FUEL_RATE", "CONTROL_MODULE_VOLTAGE")
ROUNDS = 3  # each measured ROUNDS times for seconds / ROUNDS, the median kept
DRIVE = {"speed": 50.0, "rpm": 2000.0, "engine_temp": 88.0, "fuel_rate": 3.45, "battery_voltage": 13.8}


def ours(path: str, seconds: float) -> float:
    """Readings per second that reach the buffer."""
    src = obd_source(path, [1], None, protocol="6")
    try:
        src.start()
        buffer = src.buffers[1]
        time.sleep(0.5)  # connected and polling
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        with buffer.cond:
            n = sum(sum(1 for t in track.times if t0 <= t < t1) for track in buffer.tracks.values())
        return n / (t1 - t0)
    finally:
        src.close()


def async_loop(path: str, seconds: float, delay: float | None) -> float:
    """Non-null responses per second that python-OBD's Async loop hands to its callbacks."""
    kwargs = {} if delay is None else {"delay_cmds": delay}
    conn = obd.Async(path, protocol="6", **kwargs)
    times: list[float] = []
    lock = threading.Lock()

    def seen(response: obd.OBDResponse) -> None:
        if not response.is_null():
            with lock:
                times.append(time.time())

    try:
        for name in COMMANDS:
            conn.watch(obd.commands[name], callback=seen)
        conn.start()
        time.sleep(0.5)
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        with lock:
            n = sum(1 for t in times if t0 <= t < t1)
        return n / (t1 - t0)
    finally:
        conn.stop()
        conn.close()


def run(seconds: float = 5.0) -> list[tuple[str, float, float, float]]:
    """Rows (what, ours in readings/s, python-OBD's Async in readings/s, ours / Async)."""
    logging.getLogger("obd").setLevel(logging.CRITICAL + 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-obd-") as tmp:
        for latency in (0.0, 0.005):
            drive = FakeDrive.constant(**DRIVE)
            runs: dict[str, list[float]] = {"ours": [], "eager": [], "default": []}
            with FakeElm327(drive, link=Path(tmp) / "obd", latency=latency) as fake:
                for _ in range(ROUNDS):  # interleaved, so that all see the same machine
                    runs["ours"].append(ours(fake.path, seconds / ROUNDS))
                    runs["eager"].append(async_loop(fake.path, seconds / ROUNDS, 0.0))
                    runs["default"].append(async_loop(fake.path, seconds / ROUNDS, None))
            mine, eager, default = (statistics.median(runs[k]) for k in ("ours", "eager", "default"))
            car = f"car answers in {latency * 1e3:.0f} ms"
            rows.append((f"{car}, vs Async(delay_cmds=0)", mine, eager, mine / eager))
            rows.append((f"{car}, vs Async() (0.25 s a round)", mine, default, mine / default))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows = run(args.seconds)
    print(f"{'readings/s, 5 commands':<48} {'ours':>8} {'Async':>8} {'ratio':>6}  (target >= 0.9)")
    for label, a, b, ratio in rows:
        print(f"{label:<48} {a:8.0f} {b:8.0f} {ratio:6.2f}")


if __name__ == "__main__":
    main()
