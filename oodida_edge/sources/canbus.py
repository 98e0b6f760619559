"""Live CAN through python-can, decoded with a DBC file: ``--source can:INTERFACE:CHANNEL``.

Each client reads its own bus: ``{client}`` in CHANNEL is replaced by the client id
(``can:socketcan:can{client}``); a CHANNEL without it serves one client only. The options
(``?bitrate=500000&...``) go to ``can.Bus`` as keyword arguments, numbers and true/false
converted (``bitrate`` is an int).

Starting checks everything it can: the DBC loads, every mapped DBC signal is in it, and each
bus opens (then closes again) - a channel or adapter that is not there fails the edge's start
with one sentence naming it, rather than a retry loop later.

Times: a reading is stamped with its frame's timestamp when that is on the host's clock (it
is for socketcan, whose kernel stamps at reception, and for virtual and slcan, whose python-can
drivers stamp with ``time.time()`` on arrival), so frames drained in one batch keep their own
spacing. Adapters stamping with their own clock (a hardware counter from power-on, slcan's
60 s wrapping milliseconds) are anchored to the host clock at their first frame and re-anchored
whenever they drift more than ``CLOCK_SLACK`` from it; readings go in the buffer in the
adapter's order. The frames drained in one poll are decoded per message at once (``FrameDecoder``,
as for recorded logs); a frame of a mapped id too short for its DBC message is skipped and
logged once per id; the bus stays up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .base import Entry, SourceError, require
from .dbc import Bound, FrameDecoder, dbc_rules, load_dbc
from .live import Device, LiveSource
from .mapping import Mapping

__all__ = ["CLOCK_SLACK", "CanDevice", "can_source", "parse_options"]

log = logging.getLogger("oodida.edge")

CLOCK_SLACK = 1.0  # seconds a frame's timestamp may differ from the host clock and still be used
DRAIN = 10_000  # frames taken from the bus's queue in one poll at most


def parse_options(options: dict[str, str]) -> dict[str, Any]:
    """``can.Bus`` keyword arguments from text: integers, floats and true/false converted."""
    out: dict[str, Any] = {}
    for key, text in options.items():
        value: Any = text
        lowered = text.strip().lower()
        if lowered in ("true", "false", "yes", "no", "on", "off"):
            value = lowered in ("true", "yes", "on")
        else:
            try:
                value = int(text, 0)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text
        out[key] = value
    if "bitrate" in out and not isinstance(out["bitrate"], int):
        raise SourceError(f"the CAN bitrate must be an integer (bits per second), got {options['bitrate']!r}")
    return out


class CanDevice(Device):
    """One CAN bus, decoded with the DBC's mapped messages."""

    def __init__(
        self, interface: str, channel: str, bound: dict[int, list[Bound]], options: dict[str, Any]
    ) -> None:
        self.interface = interface
        self.channel = channel
        self.options = options
        self.name = f"CAN bus {interface}:{channel}"
        self.bound = bound
        self.bus: Any = None
        self.anchor = 0.0  # host time minus adapter time
        self.undecodable: set[int] = set()
        self.extended = {fid: bool(rules[0].message.is_extended_frame) for fid, rules in bound.items()}
        self.decoders = {
            fid: FrameDecoder(rules[0].message, [b.signal for b in rules]) for fid, rules in bound.items()
        }

    def open(self) -> None:
        (can,) = require("can", "can")
        self.bus = can.Bus(interface=self.interface, channel=self.channel, **self.options)
        self.anchor = 0.0

    def poll(self) -> list[tuple[str, float, float]]:
        bus = self.bus
        if bus is None:
            raise SourceError(f"{self.name} is not open")
        batch: dict[int, tuple[list[float], list[bytes]]] = {}
        msg = bus.recv(timeout=0.5)
        taken = 0
        while msg is not None:
            fid = msg.arbitration_id
            wanted = self.extended.get(fid) == msg.is_extended_id  # 29-bit 0x1A0 is not 11-bit 0x1A0
            if wanted and not (msg.is_error_frame or msg.is_remote_frame):
                times, data = batch.setdefault(fid, ([], []))
                times.append(self.host_time(float(msg.timestamp)))
                data.append(bytes(msg.data))
            taken += 1
            if taken >= DRAIN:
                break
            msg = bus.recv(timeout=0.0)
        readings: list[tuple[str, float, float]] = []
        for fid, (times, data) in batch.items():
            self._decode(fid, times, data, readings)
        return readings

    def _decode(
        self, fid: int, times: list[float], data: list[bytes], readings: list[tuple[str, float, float]]
    ) -> None:
        """The readings of a batch of frames of one mapped message (frames too short skipped)."""
        decoder = self.decoders[fid]
        length = decoder.length
        keep = [i for i, d in enumerate(data) if len(d) >= length]
        if len(keep) < len(data) and fid not in self.undecodable:
            self.undecodable.add(fid)
            log.warning(
                "%s: frames of %s (id 0x%X) shorter than its %d bytes are skipped",
                self.name,
                decoder.message.name,
                fid,
                length,
            )
        if not keep:
            return
        matrix = np.frombuffer(b"".join(data[i][:length] for i in keep), dtype=np.uint8).reshape(-1, length)
        decoded = decoder.decode(matrix)
        at = [times[i] for i in keep]
        for b in self.bound[fid]:
            values = b.rule.convert(decoded[b.signal.name])
            readings.extend(zip([b.rule.signal] * len(at), at, values.tolist(), strict=True))

    def host_time(self, stamp: float) -> float:
        """The frame's time on the host clock (see the module's docstring)."""
        now = time.time()
        at = stamp + self.anchor
        if abs(at - now) > CLOCK_SLACK:
            self.anchor = now - stamp if abs(stamp - now) > CLOCK_SLACK else 0.0
            at = stamp + self.anchor
        return at

    def shut(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None:
            bus.shutdown()


def _channels(channel: str, client_ids: Iterable[int]) -> dict[int, str]:
    clients = list(client_ids)
    if "{client}" not in channel and len(clients) > 1:
        raise SourceError(
            f"the CAN channel {channel!r} serves one client, not {len(clients)}; put {{client}} in it "
            f"(for example can{{client}}) to give each client its own bus"
        )
    return {cid: channel.replace("{client}", str(cid)) for cid in clients}


def can_source(
    interface: str,
    channel: str,
    client_ids: Iterable[int],
    dbc: Path,
    mapping: Mapping,
    options: dict[str, str],
) -> LiveSource:
    """A live source reading each client's CAN bus; the DBC, the mapping and the buses are
    checked now (SourceError naming what is wrong)."""
    require("can", "can", "cantools")
    if not interface or not channel:
        raise SourceError(f"a CAN source needs an interface and a channel, got {interface!r}:{channel!r}")
    db = load_dbc(dbc)
    bound = dbc_rules(db, Path(dbc), mapping)
    kwargs = parse_options(options)
    entries: tuple[Entry, ...] = tuple(b.rule.entry("dbc") for rules in bound.values() for b in rules)
    devices: dict[int, CanDevice] = {}
    for cid, chan in _channels(channel, client_ids).items():
        device = CanDevice(interface, chan, bound, kwargs)
        try:
            device.open()
        except Exception as exc:
            raise SourceError(f"cannot open the CAN bus {interface}:{chan} for client {cid}: {exc}") from None
        finally:
            try:
                device.shut()
            except Exception as exc:  # a bus that opened but does not close cleanly
                log.warning("%s did not close cleanly: %s", device.name, exc)
        devices[cid] = device
    return LiveSource("can", dict(devices), {cid: entries for cid in devices})
