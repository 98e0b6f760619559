"""DBC files: which CAN frames carry which mapped signal, and how to decode them fast.

``load_dbc`` loads a CAN database (a DBC file; cantools also reads KCD, SYM and ARXML) with one
clear error naming the file, and the line and column when the parser gives them.
``dbc_rules`` resolves each rule of a mapping that names a DBC signal (``Signal`` or
``Message.Signal``; the default mapping's names match case-insensitively a DBC signal named
like a built-in signal's short name or VSS path) to the message carrying it, keyed by frame id.

``FrameDecoder`` decodes many frames of one message at once with numpy (bit extraction on the
frames' bytes read as 64-bit integers), giving exactly what cantools' ``Message.decode(data,
decode_choices=False)`` gives for each frame (tests/unit/test_source_canlog.py compares both
on real cars' DBC files); a message longer than 8 bytes (CAN FD) is decoded frame by frame
with cantools. Multiplexed signals are not supported (a mapping naming one is refused).
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from oodida_core.protocol.signals import canonical

from .base import FloatArray, SourceError, require
from .mapping import Mapping, MappingError, Rule

__all__ = ["Bound", "FrameDecoder", "dbc_rules", "load_dbc"]


class Bound(NamedTuple):
    """A mapping rule bound to the DBC message and signal that deliver it."""

    rule: Rule
    message: Any  # cantools.database.can.Message
    signal: Any  # cantools.database.can.Signal


def load_dbc(path: str | Path) -> Any:
    """The CAN database in ``path`` (a ``cantools.database.can.Database``); SourceError naming
    the file (and the line and column of a syntax error) if it does not load."""
    (cantools,) = require("can", "cantools")
    # cantools warns of each duplicate frame id (real cars' DBC files have some): to the edge's
    # log when it has one, never as bare lines on stderr (Python's last-resort handler).
    quiet = logging.getLogger("cantools")
    if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
        quiet.addHandler(logging.NullHandler())
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"no DBC file at {path}")
    try:
        # Not strict: real cars' DBC files often have an overlap or a stray VAL_ somewhere; the
        # mapped signals are checked to fit their message (dbc_rules).
        db = cantools.database.load_file(str(path), strict=False)
    except cantools.database.UnsupportedDatabaseFormatError as exc:
        inner = exc.e_dbc if path.suffix.lower() == ".dbc" else None
        inner = inner or next(
            (e for e in (exc.e_dbc, exc.e_kcd, exc.e_sym, exc.e_arxml, exc.e_cdd) if e is not None), None
        )
        line, column = getattr(inner, "line", None), getattr(inner, "column", None)
        if line is not None:  # textparser: 'Invalid syntax at line 5, column 10: "<text>"'
            near = _printable(str(inner).split(": ", 1)[-1])
            raise SourceError(
                f"{path} line {line}, column {column}: invalid syntax, not a valid CAN database "
                f"(at >>!<< in {near})"
            ) from None
        raise SourceError(f"{path}: not a valid CAN database ({_printable(str(inner or exc))})") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not a text DBC file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SourceError(f"cannot read the DBC file {path}: {exc.strerror}") from None
    except Exception as exc:  # cantools' own errors (an 11-bit id that is longer, ...)
        raise SourceError(f"{path}: not a valid CAN database ({_printable(str(exc))})") from None
    if not isinstance(db, cantools.database.can.Database):
        raise SourceError(f"{path}: a diagnostics database, not a CAN database")
    return db


def _printable(text: str, most: int = 80) -> str:
    """A file's text quoted in an error: control characters (a terminal escape in a binary or
    hostile file) shown as ?, and at most ``most`` characters."""
    shown = "".join(c if c.isprintable() else "?" for c in text[: most + 1])
    return shown if len(shown) <= most else shown[:most] + "..."


def _find(db: Any, name: str, folded: bool) -> list[tuple[Any, Any]]:
    """(message, signal) pairs a mapping name designates."""
    message_name, _, signal_name = name.rpartition(".") if "." in name and not folded else ("", "", name)
    found = []
    for message in db.messages:
        if message_name and message.name != message_name:
            continue
        for signal in message.signals:
            if folded:
                if canonical(signal.name) == canonical(name):
                    found.append((message, signal))
            elif signal.name == signal_name:
                found.append((message, signal))
    return found


def dbc_rules(db: Any, path: Path, mapping: Mapping) -> dict[int, list[Bound]]:
    """The mapped signals of ``db`` by frame id. A rule of a mapping file naming a signal the
    DBC lacks raises MappingError (with the DBC's closest names); no mapped signal at all
    raises SourceError."""
    default = mapping.path is None
    bound: dict[int, list[Bound]] = {}
    for rule in mapping.for_kind("dbc").values():
        name = rule.names["dbc"]
        found = _find(db, name, folded=default)
        if not found:
            if default:
                continue
            known = sorted({s.name for m in db.messages for s in m.signals}) + sorted(
                f"{m.name}.{s.name}" for m in db.messages for s in m.signals
            )
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise MappingError(f"{rule.where}: signal {rule.signal!r}: {path} has no signal {name!r}{hint}")
        if len(found) > 1:
            where = ", ".join(f"{m.name}.{s.name}" for m, s in found)
            raise MappingError(
                f"{rule.where}: signal {rule.signal!r}: {name!r} is in several messages of {path} "
                f"({where}); name one as Message.Signal"
            )
        message, signal = found[0]
        if signal.multiplexer_ids:
            raise MappingError(
                f"{rule.where}: signal {rule.signal!r}: {message.name}.{signal.name} in {path} is "
                f"multiplexed, and multiplexed signals are not supported"
            )
        if signal.scale == 0:
            raise MappingError(
                f"{rule.where}: signal {rule.signal!r}: {message.name}.{signal.name} in {path} has the "
                f"factor 0: every frame would read {signal.offset:g}"
            )
        other = next((b.message for b in bound.get(message.frame_id, ()) if b.message is not message), None)
        if other is not None:
            raise MappingError(
                f"{rule.where}: signal {rule.signal!r}: {message.name} and {other.name} in {path} have the "
                f"same frame id 0x{message.frame_id:X}; a frame cannot be told apart"
            )
        first = _first_bit(signal)
        if first < 0 or first + signal.length > 8 * message.length:
            raise MappingError(
                f"{rule.where}: signal {rule.signal!r}: {message.name}.{signal.name} in {path} does not "
                f"fit in its message's {message.length} bytes"
            )
        bound.setdefault(message.frame_id, []).append(Bound(rule, message, signal))
    if not bound:
        names = ", ".join(sorted(mapping.for_kind("dbc"))) or "none"
        raise SourceError(
            f"{path}: none of the signals {mapping.describe()} maps from a DBC ({names}) is in this DBC"
        )
    return bound


@dataclass(frozen=True)
class _Field:
    shift: int
    mask: int
    big: bool
    signed: bool
    length: int
    float_bits: int  # 0 for an integer signal, else 16, 32 or 64
    scale: float
    offset: float


def _first_bit(signal: Any) -> int:
    """Where a signal starts: a big-endian one's first bit counted from the first byte's top
    bit (cantools' ``start_bit``), a little-endian one's from the first byte's bottom bit."""
    if signal.byte_order == "big_endian":
        return 8 * (signal.start // 8) + (7 - signal.start % 8)
    return int(signal.start)


def _field(signal: Any) -> _Field:
    length = int(signal.length)
    if signal.byte_order == "big_endian":
        shift, big = 64 - _first_bit(signal) - length, True
    else:
        shift, big = int(signal.start), False
    floating = length if signal.conversion.is_float else 0
    return _Field(
        shift, (1 << length) - 1, big, bool(signal.is_signed), length, floating, signal.scale, signal.offset
    )


class FrameDecoder:
    """Decodes the frames of one message into its mapped signals' physical values."""

    def __init__(self, message: Any, signals: list[Any]) -> None:
        self.message = message
        self.length = int(message.length)
        self.names = [s.name for s in signals]
        self.fields = [_field(s) for s in signals]
        self.vector = self.length <= 8

    def decode(self, data: npt.NDArray[np.uint8]) -> dict[str, FloatArray]:
        """``data``: one row of ``self.length`` bytes per frame."""
        n = data.shape[0]
        if not self.vector:
            out = {name: np.empty(n) for name in self.names}
            for i in range(n):
                decoded = self.message.decode(data[i].tobytes(), decode_choices=False)
                for name in self.names:
                    out[name][i] = decoded[name]
            return out
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, : self.length] = data
        words = {False: padded.view("<u8").ravel(), True: padded.view(">u8").ravel().astype(np.uint64)}
        result = {}
        for name, f in zip(self.names, self.fields, strict=True):
            raw = (words[f.big] >> np.uint64(f.shift)) & np.uint64(f.mask)
            values: FloatArray
            if f.float_bits:
                kind = {16: np.uint16, 32: np.uint32, 64: np.uint64}[f.float_bits]
                floats = {16: np.float16, 32: np.float32, 64: np.float64}[f.float_bits]
                values = raw.astype(kind).view(floats).astype(np.float64)
            elif f.signed:
                signed = raw.astype(np.int64)
                if f.length < 64:
                    signed[signed >= (1 << (f.length - 1))] -= 1 << f.length
                values = signed.astype(np.float64)
            else:
                values = raw.astype(np.float64)
            if f.scale != 1 or f.offset != 0:
                values = values * f.scale + f.offset
            result[name] = values
        return result
