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
from collections.abc import Callable, Iterable
from pathlib import Path

from .elm327_commands import PIDS, Elm327, FakeDrive

__all__ = ["PIDS", "Elm327", "FakeDrive", "FakeElm327"]


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
