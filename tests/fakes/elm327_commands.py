"""The fake ELM327's command interpreter and the car behind it (tests/fakes/elm327.py serves it).

From the ELM327 datasheet's behaviour: a command ends with a carriage return; spaces and case
do not matter; echo (ATE), linefeeds (ATL), headers (ATH) and spaces (ATS) are switched by AT
commands and reset by ATZ; every answer ends with an empty line and the ``>`` prompt; a lone
carriage return repeats the last command; an OBD request may end with a response-count digit;
the first request after ATSP0 prints ``SEARCHING...``. The car answers on CAN 11-bit 500
kbit/s (protocol 6) from the engine ECU 7E8, with a single frame per PID (its PCI byte shown
with headers on); a PID it does not support, or any mode but 01, answers ``NO DATA``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BITMAPS", "PIDS", "Elm327", "FakeDrive", "Pid"]

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
