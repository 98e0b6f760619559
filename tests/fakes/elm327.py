"""A fake ELM327 OBD-II adapter in a car that drives a recorded drive, for tests and benchmarks.

Written from the ELM327 datasheet's behaviour (commands end with a carriage return, echo and
headers are switched by AT commands, every answer ends with an empty line and the ``>``
prompt, an empty command repeats the last one, an OBD request may end with a response-count
digit) and from what python-OBD sends (ATZ, ATE0, ATH1, ATL0, AT RV, ATSP0/ATTPn, ATDPN, the
supported-PID bitmaps, then one mode-01 PID a query). The car answers on CAN 11-bit 500 kbit/s
(protocol 6) from ECU 7E8; each PID's value is the drive's signal at the wall-clock time since
the drive started (interpolated, looping), encoded with the standard OBD-II formulas.

It serves on a pseudo-terminal (``path``: the slave's path, or a stable symlink ``link`` so
it can be unplugged and plugged back) and/or a TCP socket on 127.0.0.1 (``url``:
``socket://127.0.0.1:PORT``, what pyserial's ``serial_for_url`` opens). One thread serves it;
``close()`` releases everything it opened. As a process::

    python -m tests.fakes.elm327 --drive drive.csv --link /tmp/obd1 [--tcp PORT] [--pids 0D,0C]

prints ``ready <path-or-url>`` once serving; SIGUSR1 unplugs it, SIGUSR2 plugs it back,
SIGTERM/SIGINT end it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["PIDS", "Elm327", "FakeDrive", "FakeElm327"]

VERSION = "ELM327 v1.5"
ECU_ID = "7E8"  # the engine's answers on CAN 11-bit


def _u8(x: float) -> list[int]:
    return [min(255, max(0, round(x)))]


def _u16(x: float) -> list[int]:
    raw = min(0xFFFF, max(0, round(x)))
    return [raw >> 8, raw & 0xFF]


@dataclass(frozen=True)
class Pid:
    signal: str  # the drive's column
    encode: Callable[[float], list[int]]  # physical value -> data bytes (SAE J1979 formulas)


PIDS: dict[int, Pid] = {
    0x05: Pid("engine_temp", lambda v: _u8(v + 40.0)),  # A - 40 degC
    0x0C: Pid("rpm", lambda v: _u16(v * 4.0)),  # (256A + B) / 4 rpm
    0x0D: Pid("speed", _u8),  # A km/h
    0x42: Pid("battery_voltage", lambda v: _u16(v * 1000.0)),  # (256A + B) / 1000 V
    0x5E: Pid("fuel_rate", lambda v: _u16(v * 20.0)),  # (256A + B) / 20 l/h
}
BITMAPS = (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0)


class FakeDrive:
    """Per signal, times (s from the start) and values; a signal loops over its own span."""

    def __init__(self, series: Mapping[str, tuple[Iterable[float], Iterable[float]]]) -> None:
        self.series: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        for name, (times, values) in series.items():
            t = np.asarray(list(times), dtype=np.float64)
            v = np.asarray(list(values), dtype=np.float64)
            if t.size == 0 or t.shape != v.shape or np.any(np.diff(t) <= 0):
                raise ValueError(f"signal {name!r}: times must increase strictly, one value each")
            self.series[name] = (t - t[0], v)

    @classmethod
    def constant(cls, **values: float) -> FakeDrive:
        return cls({name: ([0.0], [v]) for name, v in values.items()})

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> FakeDrive:
        """A CSV file with a ``time`` column (seconds) and one column per signal."""
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        t = table[:, header.index("time")]
        return cls({h: (t, table[:, i]) for i, h in enumerate(header) if h != "time"})

    def value(self, name: str, elapsed: float) -> float:
        t, v = self.series[name]
        span = float(t[-1])
        at = elapsed % span if span > 0 else 0.0
        return float(np.interp(at, t, v))


class Elm327:
    """The adapter's command interpreter: one command line in, the answer's bytes out."""

    def __init__(
        self,
        drive: FakeDrive,
        supported: Iterable[int],
        started: float,
        latency: float = 0.0,
        ignition: bool = True,
    ) -> None:
        self.drive = drive
        self.supported = frozenset(supported)
        self.started = started
        self.latency = latency
        self.ignition = ignition
        self.pending = bytearray()
        self.reset()

    def reset(self) -> None:
        self.echo, self.linefeeds, self.headers, self.spaces = True, False, False, True
        self.protocol, self.auto, self.searched = "0", True, False
        self.last = ""

    # -- bytes in, bytes out ---------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            if byte == 0x0D:
                line = self.pending.decode("latin-1")
                self.pending.clear()
                if self.echo:
                    out += line.encode("latin-1") + b"\r"
                out += self.answer(line)
            elif byte not in (0x0A, 0x00):
                self.pending.append(byte)
        return bytes(out)

    def answer(self, line: str) -> bytes:
        command = line.replace(" ", "").upper()
        if not command:
            command = self.last  # a lone carriage return repeats the last command
        else:
            self.last = command
        eol = "\r\n" if self.linefeeds else "\r"
        if command in ("ATZ", "ATWS"):
            self.reset()
            return f"{eol}{eol}{VERSION}{eol}{eol}>".encode()
        lines = self.at(command[2:]) if command.startswith("AT") else self.obd(command)
        return "".join(text + eol for text in lines).encode() + eol.encode() + b">"

    def at(self, cmd: str) -> list[str]:
        flags = {"E": "echo", "L": "linefeeds", "H": "headers", "S": "spaces"}
        if len(cmd) == 2 and cmd[0] in flags and cmd[1] in "01":
            setattr(self, flags[cmd[0]], cmd[1] == "1")
            return ["OK"]
        if cmd == "I":
            return [VERSION]
        if cmd == "@1":
            return ["OBDII to RS232 Interpreter"]
        if cmd == "RV":
            volts = self.reading("battery_voltage") if "battery_voltage" in self.drive.series else 12.6
            return [f"{volts:.1f}V"]
        if cmd == "DPN":
            return [("A" if self.auto else "") + self.protocol]
        if cmd == "DP":
            name = "ISO 15765-4 (CAN 11/500)" if self.protocol == "6" else "AUTO"
            return [("AUTO, " if self.auto and self.protocol != "0" else "") + name]
        for prefix in ("SPA", "TPA", "SP", "TP"):
            if cmd.startswith(prefix) and len(cmd) == len(prefix) + 1 and cmd[-1] in "0123456789ABC":
                self.protocol = cmd[-1]
                self.auto = prefix.endswith("A") or cmd[-1] == "0"
                self.searched = False
                return ["OK"]
        simple = ("D", "D0", "D1", "M0", "M1", "CAF0", "CAF1", "AT0", "AT1", "AT2", "PC", "LP")
        if cmd in simple or cmd.startswith(("SH", "ST", "CRA")):
            return ["OK"]
        return ["?"]

    def obd(self, command: str) -> list[str]:
        if len(command) < 4 or any(c not in "0123456789ABCDEF" for c in command):
            return ["?"]
        if len(command) % 2:
            command = command[:-1]  # the response-count digit: one ECU answers anyway
        lines: list[str] = []
        if self.protocol == "0" and not self.searched:
            lines.append("SEARCHING...")
        if not self.ignition or self.protocol not in ("0", "6"):
            return [*lines, "UNABLE TO CONNECT"]
        if self.protocol == "0":
            self.protocol, self.searched = "6", True
        if self.latency:
            time.sleep(self.latency)
        mode, pid = int(command[:2], 16), int(command[2:4], 16)
        data = self.mode01(pid) if mode == 1 and len(command) == 4 else None
        if data is None:
            return [*lines, "NO DATA"]
        payload = [0x41, pid, *data]
        if self.headers:
            payload = [len(payload), *payload]  # the single frame's PCI byte (length)
        sep = " " if self.spaces else ""
        body = sep.join(f"{b:02X}" for b in payload)
        return [*lines, (ECU_ID + sep + body) if self.headers else body]

    def mode01(self, pid: int) -> list[int] | None:
        if pid in BITMAPS:
            if pid and pid not in self.bitmap_chain():
                return None
            bits = 0
            for n in range(1, 33):
                if pid + n in self.supported or (n == 32 and pid + 32 in self.bitmap_chain()):
                    bits |= 1 << (32 - n)
            return list(bits.to_bytes(4, "big"))
        if pid not in self.supported:
            return None
        return PIDS[pid].encode(self.reading(PIDS[pid].signal))

    def bitmap_chain(self) -> set[int]:
        """The bitmap PIDs that answer: 00, and each next one while a PID at or beyond it is supported."""
        top = max(self.supported, default=0)
        return {b for b in BITMAPS if b == 0 or b < top}

    def reading(self, name: str) -> float:
        return self.drive.value(name, time.time() - self.started)


class FakeElm327:
    """The fake adapter served on a pseudo-terminal and/or 127.0.0.1 TCP, by one thread."""

    def __init__(
        self,
        drive: FakeDrive,
        *,
        supported: Iterable[int] | None = None,
        link: str | os.PathLike[str] | None = None,
        pty: bool = True,
        tcp: bool = False,
        tcp_port: int = 0,
        silent: bool = False,
        latency: float = 0.0,
        ignition: bool = True,
    ) -> None:
        pids = (
            {p for p, spec in PIDS.items() if spec.signal in drive.series}
            if supported is None
            else set(supported)
        )
        unknown = sorted(p for p in pids if p not in PIDS or PIDS[p].signal not in drive.series)
        if unknown:
            raise ValueError(f"PIDs {', '.join(f'{p:02X}' for p in unknown)} have no signal in the drive")
        self.drive, self.supported, self.silent = drive, pids, silent
        self.latency, self.ignition = latency, ignition
        self.link = Path(link) if link is not None else None
        self.use_pty, self.use_tcp, self.tcp_port = pty, tcp, tcp_port
        self.started = time.time()  # the drive's clock
        self.slave_path = ""
        self.plugged = False
        self._master = self._slave = -1
        self._listener: socket.socket | None = None
        self._channels: dict[int, tuple[Callable[[bytes], None], Elm327]] = {}  # fd -> (send, state)
        self._conns: dict[int, socket.socket] = {}
        self._wake_r, self._wake_w = os.pipe()
        self._requests: queue.Queue[tuple[Callable[[], None], threading.Event]] = queue.Queue()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="fake-elm327", daemon=True)

    # -- the test's side -------------------------------------------------------------------
    @property
    def path(self) -> str:
        return str(self.link) if self.link is not None else self.slave_path

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.tcp_port}"

    def start(self) -> FakeElm327:
        self._plug()
        self._thread.start()
        return self

    def unplug(self) -> None:
        """The adapter is pulled out: the terminal hangs up, the link and the TCP port vanish."""
        self._call(self._unplug)

    def plug(self) -> None:
        """Plugged back in: a new terminal behind the same link, the same TCP port."""
        self._call(self._plug)

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._unplug)
            self._closing = True
            os.write(self._wake_w, b"x")
            self._thread.join(5.0)
        else:
            self._unplug()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> FakeElm327:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the serving thread ----------------------------------------------------------------
    def _call(self, action: Callable[[], None]) -> None:
        done = threading.Event()
        self._requests.put((action, done))
        os.write(self._wake_w, b"x")
        if not done.wait(10.0):
            raise RuntimeError("the fake ELM327's thread did not answer")

    def _state(self) -> Elm327:
        return Elm327(self.drive, self.supported, self.started, self.latency, self.ignition)

    def _plug(self) -> None:
        if self.plugged:
            return
        if self.use_pty:
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)  # no echo or line editing by the terminal itself
            self.slave_path = os.ttyname(self._slave)
            master = self._master
            self._channels[master] = (lambda data: _write_all(master, data), self._state())
            if self.link is not None:
                tmp = self.link.with_name(self.link.name + ".new")
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                os.symlink(self.slave_path, tmp)
                os.replace(tmp, self.link)
        if self.use_tcp:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.tcp_port))
            listener.listen(4)
            self.tcp_port = listener.getsockname()[1]
            self._listener = listener
        self.plugged = True

    def _unplug(self) -> None:
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        for fd in list(self._channels):
            self._drop(fd)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.plugged = False

    def _drop(self, fd: int) -> None:
        self._channels.pop(fd, None)
        conn = self._conns.pop(fd, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _serve(self) -> None:
        try:
            while not self._closing:
                fds = [self._wake_r, *self._channels]
                if self._listener is not None:
                    fds.append(self._listener.fileno())
                ready, _, _ = select.select(fds, [], [], 1.0)
                for fd in ready:
                    if fd == self._wake_r:
                        os.read(fd, 64)
                        self._run_requests()
                        break  # the channels may have changed
                    if self._listener is not None and fd == self._listener.fileno():
                        self._accept()
                    elif fd in self._channels:
                        self._receive(fd)
        finally:
            self._unplug()

    def _run_requests(self) -> None:
        while True:
            try:
                action, done = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                action()
            finally:
                done.set()

    def _accept(self) -> None:
        assert self._listener is not None
        conn, _ = self._listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conns[conn.fileno()] = conn
        self._channels[conn.fileno()] = (conn.sendall, self._state())

    def _receive(self, fd: int) -> None:
        send, state = self._channels[fd]
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            if fd in self._conns:
                self._drop(fd)  # the TCP client left; a pty master never reads EOF (we hold the slave)
            return
        if self.silent:
            return
        try:
            send(state.feed(data))
        except OSError:
            self._drop(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.elm327", description=__doc__.split("\n")[0])
    parser.add_argument("--drive", required=True, help="CSV: a time column (s) and one column per signal")
    parser.add_argument("--link", help="a stable path to the pseudo-terminal (a symlink)")
    parser.add_argument("--tcp", type=int, help="serve on 127.0.0.1:PORT too (0: any free port)")
    parser.add_argument(
        "--pids", help="the PIDs the car supports, hex, comma-separated (default: the drive's)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the car takes per request")
    args = parser.parse_args(argv)
    supported = [int(p, 16) for p in args.pids.split(",")] if args.pids else None
    fake = FakeElm327(
        FakeDrive.from_csv(args.drive),
        supported=supported,
        link=args.link,
        tcp=args.tcp is not None,
        tcp_port=args.tcp or 0,
        latency=args.latency,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: fake.unplug())
    signal.signal(signal.SIGUSR2, lambda *_: fake.plug())
    fake.start()
    try:
        print("ready", fake.url if args.tcp is not None and not args.link else fake.path, flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        fake.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
