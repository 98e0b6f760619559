"""``oodida-edge --source KIND[:TARGET]``: which source a vehicle reads, parsed and built.

=================================  ==============================================================
``sim``                            simulated vehicles (the default)
``csv:PATH``                       CSV recordings (the same as ``--replay PATH``)
``mdf:PATH``                       MDF4 measurement files (``oodida[mdf]``)
``canlog:PATH``                    CAN logs: .log .asc .blf .trc .mf4, with ``--dbc`` (``oodida[can]``)
``obd:PORT[?protocol=6&timeout=5]`` a live ELM327 OBD-II adapter: a device or ``socket://HOST:PORT``;
                                   ``protocol`` (ELM327's number) skips the adapter's protocol
                                   search, ``timeout`` in seconds (``oodida[obd]``)
``can:INTERFACE:CHANNEL[?k=v&..]`` a live CAN bus through python-can, with ``--dbc``
                                   (``can:socketcan:can0``, ``can:slcan:/dev/ttyACM0?bitrate=500000``;
                                   ``oodida[can]``)
=================================  ==============================================================

A PATH is a file every client shares (each from its own offset) or a directory of
``<client id>.<suffix>`` files. In a live PORT or CHANNEL, ``{client}`` is replaced by the client
id, so one edge process can serve several vehicles; without it a live source serves one.
``--mapping FILE`` (oodida_edge/sources/mapping.py) says which DBC signal, OBD command or MDF
channel delivers which signal, and adds signals beyond the six.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from .base import Source, SourceError
from .mapping import Mapping, default_mapping, load_mapping

__all__ = ["KINDS", "LIVE_KINDS", "SourceSpec", "build_source", "parse_source"]

KINDS = ("sim", "csv", "mdf", "canlog", "obd", "can")
LIVE_KINDS = ("obd", "can")
_NEEDS_DBC = ("canlog", "can")
_MAPPED = ("mdf", "canlog", "obd", "can")
USAGE = "sim, csv:PATH, mdf:PATH, canlog:PATH, obd:PORT or can:INTERFACE:CHANNEL"
OBD_OPTIONS = ("protocol", "timeout")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--source``."""

    kind: str
    target: str = ""
    interface: str = ""  # can: python-can's interface name
    options: dict[str, str] = field(default_factory=dict)  # can: keyword arguments of can.Bus

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS

    def __str__(self) -> str:
        if self.kind == "sim":
            return "sim"
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        tail = f"?{query}" if query else ""
        if self.kind == "can":
            return f"can:{self.interface}:{self.target}{tail}"
        return f"{self.kind}:{self.target}{tail}"


def parse_source(text: str) -> SourceSpec:
    """The source ``text`` names; a malformed one raises SourceError saying what is accepted."""
    if not isinstance(text, str) or not text.strip():
        raise SourceError(f"--source is empty; it is one of {USAGE}")
    kind, sep, rest = text.strip().partition(":")
    kind = kind.lower()
    if kind not in KINDS:
        raise SourceError(f"--source {text!r}: unknown kind {kind!r}; it is one of {USAGE}")
    if kind == "sim":
        if rest:
            raise SourceError(f"--source {text!r}: sim takes no target")
        return SourceSpec("sim")
    if not rest:
        raise SourceError(f"--source {text!r}: {kind} needs a target ({USAGE})")
    if kind == "obd":
        port, _, query = rest.partition("?")
        options = _options(text, query)
        unknown = sorted(set(options) - set(OBD_OPTIONS))
        if unknown or not port:
            raise SourceError(
                f"--source {text!r}: obd:PORT takes the options {', '.join(OBD_OPTIONS)}"
                + (f", not {', '.join(unknown)}" if unknown else "")
            )
        return SourceSpec("obd", port, options=options)
    if kind != "can":
        return SourceSpec(kind, rest)
    interface, sep, channel = rest.partition(":")
    channel, _, query = channel.partition("?")
    if not sep or not interface or not channel:
        raise SourceError(
            f"--source {text!r}: a CAN bus is can:INTERFACE:CHANNEL, e.g. can:socketcan:can0 or "
            "can:slcan:/dev/ttyACM0?bitrate=500000"
        )
    return SourceSpec("can", channel, interface, _options(text, query))


def _options(text: str, query: str) -> dict[str, str]:
    try:
        return dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise SourceError(f"--source {text!r}: options after ? are key=value pairs joined by &") from None


def _mapping(spec: SourceSpec, mapping: Path | None) -> Mapping:
    if mapping is None:
        return default_mapping()
    if spec.kind not in _MAPPED:
        raise SourceError(f"--mapping applies to {', '.join(_MAPPED)} sources, not {spec.kind}")
    return load_mapping(mapping)


def build_source(
    spec: SourceSpec,
    client_ids: Sequence[int],
    *,
    dbc: Path | None = None,
    mapping: Path | None = None,
) -> Source:
    """The source for ``client_ids``, checked: every file loads, every device answers once.
    Raises SourceError (MissingExtra when the source's library is not installed)."""
    if spec.kind in _NEEDS_DBC and dbc is None:
        raise SourceError(f"{spec}: a CAN source needs --dbc FILE to decode its frames")
    if spec.kind not in _NEEDS_DBC and dbc is not None:
        raise SourceError(f"--dbc applies to CAN sources (canlog, can), not {spec.kind}")
    rules = _mapping(spec, mapping)
    source: Source
    if spec.kind == "sim":
        from .simulated import SimulatedSensors

        source = SimulatedSensors()
    elif spec.kind == "csv":
        from .csvfile import ReplaySensors

        source = ReplaySensors(spec.target)
    elif spec.kind == "mdf":
        from .mdf import mdf_source

        source = mdf_source(Path(spec.target), rules)
    elif spec.kind == "canlog":
        from .canlog import canlog_source

        assert dbc is not None
        source = canlog_source(Path(spec.target), dbc, rules)
    elif spec.kind == "obd":
        from .obd import obd_source

        protocol = (spec.options.get("protocol") or "").upper() or None
        if protocol is not None and (len(protocol) != 1 or protocol not in "123456789ABC"):
            raise SourceError(
                f"{spec}: protocol is an ELM327 protocol number, 1-9 or A-C (6: CAN 11-bit 500 kbit/s)"
            )
        try:
            timeout = float(spec.options.get("timeout", "5"))
        except ValueError:
            timeout = -1.0
        if not 0.1 <= timeout <= 120:
            raise SourceError(f"{spec}: timeout is seconds, 0.1 to 120")
        source = obd_source(spec.target, client_ids, rules, timeout=timeout, protocol=protocol)
    else:
        from .canbus import can_source

        assert dbc is not None
        source = can_source(spec.interface, spec.target, client_ids, dbc, rules, spec.options)
    try:
        source.check(client_ids)
    except BaseException:
        source.close()
        raise
    return source
