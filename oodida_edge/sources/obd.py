"""Live OBD-II through an ELM327 adapter, read with python-OBD (``pip install 'oodida[obd]'``).

Each client has its own adapter: ``port`` is a device path (``/dev/ttyUSB0``, ``/dev/rfcomm0``)
or a pyserial URL (``socket://127.0.0.1:35000`` for a Wi-Fi adapter); ``{client}`` in it is
replaced by the client's id, so one edge process can serve several vehicles. The mapping file
names, per signal, a python-OBD command (``SPEED``) or a mode-01 PID (``010D``); without one,
the five built-in signals OBD-II has PIDs for are read.

At start every adapter is connected once: a missing device, an adapter that does not answer
and a car that does not answer each stop the edge with one sentence naming the port. The car's
supported-PID bitmaps decide the catalogue: a mapped signal the car does not support is logged
once and left out (the vehicle advertises only what it can deliver). Then one thread per
adapter (live.DeviceThread) queries the supported commands round-robin, as python-OBD's own
``Async`` loop does, timestamping each answer; an adapter that goes away is retried with
backoff while reads fail with ``SignalUnavailable`` naming it.

Only mode-01 commands (live data) and the adapter's own ``ELM_VOLTAGE`` can be mapped: other
modes are not measurements, and mode 04 would clear the car's trouble codes.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .base import Entry, SourceError, require
from .live import Device, LiveSource
from .mapping import Mapping, MappingError, Rule, default_mapping

__all__ = ["ObdDevice", "ObdSource", "obd_source", "resolve_command"]

log = logging.getLogger("oodida.edge")

MAX_MISSES = 10  # queries in a row without an answer before the adapter counts as gone
# python-OBD waits 10 s for each byte and retries a silent read ten times (~100 s a query); once
# connected, a byte may take this long (an ELM327 answers, NO DATA at worst, within its ~0.2 s
# CAN timeout), which bounds a query to a silent adapter to ~12 s.
BYTE_TIMEOUT = 1.0
# The ELM327's boot baud rates first (38400, 9600), then the faster ones it can be set to.
BAUDS = (38400, 9600, 230400, 115200, 57600, 19200)
_PID = re.compile(r"(?:0X)?01([0-9A-F]{2})")
# How long python-OBD may take to connect (its ATZ, ATE0, ..., and the protocol search when no
# protocol is given): an adapter that answered the probe and then went mute would otherwise
# hold the start for two minutes (10 s a read, ten reads a command).
CONNECT_FLOOR = 10.0  # seconds, or three times the source's timeout
SEARCH = 15.0  # seconds more for the ELM327's protocol search
_connecting = threading.local()  # .deadline: when the current thread's python-OBD connect gives up


def _libraries() -> tuple[ModuleType, ModuleType]:
    pint_log = logging.getLogger("pint.util")  # python-OBD redefines pint units at import
    level = pint_log.level
    pint_log.setLevel(logging.ERROR)
    try:
        obd, serial = require("obd", "obd", "serial")
    finally:
        pint_log.setLevel(level)
    elm327: Any = importlib.import_module("obd.elm327")
    if not isinstance(elm327.serial, _Serial):  # its connects, bounded (_Adapter.connect)
        elm327.serial = _Serial(serial)
    # python-OBD logs every unanswered query to stderr at WARNING; our own log says what matters.
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("obd").setLevel(logging.CRITICAL + 1)
    return obd, serial


class _Port:
    """A port python-OBD opened while connecting: once the connection's deadline has passed,
    a read raises (python-OBD takes it as a disconnection and gives up at once)."""

    def __init__(self, port: Any, deadline: float) -> None:
        object.__setattr__(self, "_port", port)
        object.__setattr__(self, "deadline", deadline)

    def read(self, size: int = 1) -> bytes:
        port = self._port
        if self.deadline is None:
            return bytes(port.read(size))
        left = self.deadline - time.monotonic()
        if left <= 0:
            _connecting.expired = True
            raise OSError("the adapter stopped answering while python-OBD connected")
        timeout = port.timeout
        port.timeout = left if timeout is None else min(timeout, left)
        try:
            return bytes(port.read(size))
        finally:
            port.timeout = timeout

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "deadline":
            object.__setattr__(self, name, value)
        else:
            setattr(self._port, name, value)


class _Serial:
    """pyserial as python-OBD's ELM327 sees it: a port opened while this thread connects
    (``_connecting.deadline``) gives up at that deadline."""

    def __init__(self, serial: ModuleType) -> None:
        self._serial = serial

    def serial_for_url(self, *args: Any, **kwargs: Any) -> Any:
        port = self._serial.serial_for_url(*args, **kwargs)
        deadline = getattr(_connecting, "deadline", None)
        return port if deadline is None else _Port(port, deadline)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._serial, name)


def resolve_command(obd: ModuleType, rule: Rule) -> Any:
    """The python-OBD command of a rule's ``obd`` name; an unknown one raises MappingError."""
    name = rule.names["obd"]
    key = name.strip().upper()
    found = _PID.fullmatch(key)
    command: Any = None
    if found is not None and obd.commands.has_pid(1, int(found.group(1), 16)):
        command = obd.commands[1][int(found.group(1), 16)]
    elif obd.commands.has_name(key):
        command = obd.commands[key]
        if command.mode != 1 and key != "ELM_VOLTAGE":
            raise MappingError(
                f"{rule.where}: signal {rule.signal!r}: OBD command {name!r} is not live data "
                f"(only mode-01 commands and ELM_VOLTAGE can be read)"
            )
    if command is None:
        raise MappingError(
            f"{rule.where}: signal {rule.signal!r}: {name!r} is not a python-OBD command "
            f"(a name such as SPEED or a mode-01 PID such as 010D)"
        )
    return command


def _magnitude(value: object) -> float | None:
    """A response's number (a pint Quantity's magnitude, in python-OBD's unit), or None."""
    number = getattr(value, "magnitude", value)
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None
    return float(number) if math.isfinite(number) else None


@dataclass(frozen=True)
class Watched:
    """One signal a device reads: its rule (conversion) and python-OBD command."""

    rule: Rule
    command: Any


class _Adapter:
    """How to reach one adapter: probe it, then connect python-OBD to it."""

    def __init__(self, obd: ModuleType, serial: ModuleType, port: str, timeout: float, protocol: str | None):
        self.obd, self.serial = obd, serial
        self.port, self.timeout, self.protocol = port, timeout, protocol
        self.is_url = "://" in port
        self.baud: int | None = None

    def connect(self) -> Any:
        """A python-OBD connection to the car; SourceError naming the port if there is none."""
        if not self.is_url and not os.path.exists(self.port):
            raise SourceError(f"OBD-II adapter {self.port}: no such device (is the adapter plugged in?)")
        baud = self._probe()  # every time: python-OBD would wait minutes on a silent adapter
        limit = max(CONNECT_FLOOR, 3 * self.timeout) + (SEARCH if self.protocol is None else 0.0)
        _connecting.deadline, _connecting.expired = time.monotonic() + limit, False
        try:
            conn = self.obd.OBD(self.port, baudrate=baud, protocol=self.protocol, fast=True, timeout=0.1)
        finally:
            _connecting.deadline = None
        port = getattr(conn.interface, "_ELM327__port", None)
        if isinstance(port, _Port):
            port.deadline = None  # connected: queries have their own bound (BYTE_TIMEOUT)
        status = conn.status()
        if status != self.obd.OBDStatus.CAR_CONNECTED:
            with contextlib.suppress(Exception):
                conn.close()
            if _connecting.expired:
                raise SourceError(
                    f"OBD-II adapter {self.port} answered, then stopped answering while python-OBD "
                    f"connected (no connection within {limit:g} s)"
                )
            raise SourceError(
                f"OBD-II adapter {self.port} answers, but python-OBD could not reach the car "
                f"(status {status!r}; is the ignition on?)"
            )
        self.baud = baud
        _byte_timeout(conn, min(BYTE_TIMEOUT, self.timeout))
        if self.protocol is None:
            self.protocol = conn.protocol_id() or None  # reconnecting skips the protocol search
        return conn

    def _probe(self) -> int:
        """The baud rate at which the adapter answers a harmless ATI within ``timeout`` seconds
        (python-OBD itself would wait 10 s per command for a silent adapter)."""
        fixed = self.is_url or os.path.realpath(self.port).startswith("/dev/pts/")
        known = (self.baud,) if self.baud else ()
        bauds = BAUDS[:1] if fixed else (*known, *(b for b in BAUDS if b != self.baud))
        each = self.timeout if fixed else max(0.2, self.timeout / len(bauds))  # no baud rate: one try
        try:
            port = self.serial.serial_for_url(self.port, baudrate=bauds[0], timeout=each, write_timeout=each)
        except (self.serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"OBD-II adapter {self.port}: cannot open it: {exc}") from None
        try:
            for baud in bauds:
                port.baudrate = baud
                port.reset_input_buffer()
                port.write(b"ATI\r")
                port.flush()
                if self._prompt(port, each):
                    return baud
        except (self.serial.SerialException, OSError) as exc:
            raise SourceError(f"OBD-II adapter {self.port}: {exc}") from None
        finally:
            port.close()
        raise SourceError(
            f"OBD-II adapter {self.port} did not answer within {self.timeout:g} s "
            f"(no prompt after ATI: is it powered, and is this its port?)"
        )

    @staticmethod
    def _prompt(port: Any, wait: float) -> bool:
        deadline = time.monotonic() + wait
        seen = bytearray()
        while b">" not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            port.timeout = left
            seen += port.read(port.in_waiting or 1)
        return True


def _byte_timeout(conn: Any, seconds: float) -> None:
    """Shorten python-OBD's hard-coded 10 s read timeout on a connected adapter's port (it has
    no option for it; left alone if its ELM327 object ever keeps the port elsewhere)."""
    port = getattr(conn.interface, "_ELM327__port", None)
    if port is not None and hasattr(port, "timeout"):
        port.timeout = seconds


class ObdDevice(Device):
    """One client's adapter: queries its commands round-robin, one round a poll."""

    def __init__(self, client: int, adapter: _Adapter, watched: Sequence[Watched], conn: Any = None) -> None:
        self.name = f"OBD-II adapter {adapter.port} (client {client})"
        self.adapter = adapter
        self.watched = tuple(watched)
        self._conn = conn  # the connection made at start, used by the first open()
        self._misses = 0
        self._answered = time.monotonic()

    def open(self) -> None:
        if self._conn is None or not self._conn.is_connected():
            self._close()
            self._conn = self.adapter.connect()
        self._misses = 0
        self._answered = time.monotonic()

    def poll(self) -> list[tuple[str, float, float]]:
        conn = self._conn
        if conn is None:
            raise SourceError("not connected")
        not_connected = self.adapter.obd.OBDStatus.NOT_CONNECTED
        readings: list[tuple[str, float, float]] = []
        for w in self.watched:
            try:
                response = conn.query(w.command, force=True)
            except Exception:
                if self._conn is not conn:
                    return readings  # shut() closed the port under the query: the source is closing
                raise
            at = time.time()
            if self._conn is not conn:
                return readings
            if conn.status() == not_connected:
                raise SourceError(f"the adapter stopped answering: python-OBD reports {not_connected!r}")
            value = _magnitude(response.value)
            if value is None:
                self._misses += 1
                quiet = time.monotonic() - self._answered
                if self._misses >= MAX_MISSES or quiet > self.adapter.timeout:
                    raise SourceError(
                        f"no answer for {quiet:.1f} s ({self._misses} queries in a row, "
                        f"the last {w.command.name})"
                    )
                continue
            self._misses = 0
            self._answered = time.monotonic()
            readings.append((w.rule.signal, at, w.rule.convert_one(value)))
        return readings

    def shut(self) -> None:
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class ObdSource(LiveSource):
    """LiveSource whose close() also releases connections of devices never started."""

    def __init__(self, devices: dict[int, ObdDevice], catalogues: dict[int, tuple[Entry, ...]]) -> None:
        super().__init__("obd", dict(devices), catalogues)
        self.obd_devices = devices

    def close(self) -> None:
        for thread in self.threads.values():
            thread.stop()
        for device in self.obd_devices.values():
            device.shut()  # closing the port ends a query blocked on a silent adapter
        super().close()


def _supported(
    obd: ModuleType, client: int, port: str, conn: Any, commands: dict[str, tuple[Rule, Any]], where: str
) -> list[Watched]:
    watched = []
    for sid, (rule, command) in commands.items():
        if not conn.supports(command):
            log.warning(
                "client %d: the car at %s does not support OBD command %s (%s) for signal %r; "
                "it is left out of the client's catalogue",
                client,
                port,
                command.name,
                command.command.decode(),
                sid,
            )
            continue
        value = conn.query(command, force=True).value
        if value is not None and _magnitude(value) is None:
            raise MappingError(
                f"{rule.where}: signal {sid!r}: OBD command {command.name} gives "
                f"{type(value).__name__}, not a number"
            )
        watched.append(Watched(rule, command))
    if not watched:
        names = ", ".join(f"{sid} ({rule.names['obd']})" for sid, (rule, _) in commands.items())
        raise SourceError(
            f"the car at {port} (client {client}) supports none of the signals {where} maps: {names}"
        )
    return watched


def obd_source(
    port: str,
    client_ids: Sequence[int],
    mapping: Mapping | None = None,
    *,
    timeout: float = 5.0,
    protocol: str | None = None,
) -> ObdSource:
    """One adapter per client (``{client}`` in ``port`` replaced by its id), each connected
    once now; raises SourceError (MappingError, MissingExtra) for anything that cannot serve.
    ``protocol`` is the ELM327 protocol number ("6": CAN 11-bit 500 kbit/s); without it the
    adapter searches at the first connection (about 2 s longer) and reconnections reuse it."""
    obd, serial = _libraries()
    ids = list(client_ids)
    if "{client}" not in port and len(ids) > 1:
        raise SourceError(
            f"OBD-II port {port} serves one client, not {len(ids)}: put {{client}} in it "
            f"(for example /dev/rfcomm{{client}}) to give each client its own adapter"
        )
    mapping = mapping if mapping is not None else default_mapping()
    rules: MappingABC[str, Rule] = mapping.for_kind("obd")
    if not rules:
        raise SourceError(f"{mapping.describe()} maps no signal to an OBD-II command (key obd)")
    commands = {sid: (rule, resolve_command(obd, rule)) for sid, rule in rules.items()}

    def connect(cid: int) -> ObdDevice:
        adapter = _Adapter(obd, serial, port.replace("{client}", str(cid)), timeout, protocol)
        conn = adapter.connect()
        try:
            watched = _supported(obd, cid, adapter.port, conn, commands, mapping.describe())
        except BaseException:
            conn.close()
            raise
        return ObdDevice(cid, adapter, watched, conn)

    # The adapters connect side by side (python-OBD takes a second or more each).
    with ThreadPoolExecutor(max_workers=min(len(ids), 16) or 1, thread_name_prefix="obd-connect") as pool:
        futures = {cid: pool.submit(connect, cid) for cid in dict.fromkeys(ids)}
    devices = {cid: f.result() for cid, f in futures.items() if f.exception() is None}
    failed = [exc for f in futures.values() if (exc := f.exception()) is not None]
    if failed:
        for device in devices.values():
            device.shut()
        raise failed[0]  # the first client's error, in the order given
    catalogues = {cid: tuple(w.rule.entry("obd") for w in d.watched) for cid, d in devices.items()}
    return ObdSource(devices, catalogues)
