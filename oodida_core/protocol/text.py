"""Text from outside, made safe to store and to print.

Strings reach the project from analysts (spec names and descriptions, file names, user names),
from vehicles (on-board error messages and results) and from custom code (exception messages).
Python strings may hold what UTF-8 JSON and Redis cannot carry (lone surrogates such as
``"\\udc80"``), and what a terminal obeys instead of showing (escape sequences, other control
characters, bidirectional overrides). This module is the one place that decides what becomes
of them:

- ``storable(text)``: valid Unicode, each lone surrogate replaced by its visible escape
  (``\\udc80``); anything else unchanged. For whatever is written to Redis or sent as JSON.
- ``storable_data(value)``: the same for every string and key of JSON-like data.
- ``printable(text)``: also every control character (C0, DEL, C1), bidirectional control and
  line or paragraph separator as a visible escape (``\\x1b``, ``\\u202e``); newlines and tabs
  kept only when asked (a multi-line message of the command line). For terminals and logs.
- ``one_line(value, limit)``: any value as one short printable line (log lines).
- ``shorten(text, width)``: ``text`` cut to ``width`` characters, what is cut ending in ``...``.
- ``short_version(version)``: a code version for people (``sha256:`` and 12 hex digits).

Escapes are shown as Python writes them; a backslash already in the text is left alone, so
the escaping is meant for eyes, not to be undone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Characters a terminal or a log reader may act on instead of showing them: C0 controls, DEL,
# C1 controls (CSI is U+009B), the Arabic letter mark and the bidirectional marks, embeddings,
# overrides and isolates, the line and paragraph separators, and lone surrogates.
_OTHERS = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNPRINTABLE = re.compile(f"[\x00-\x1f{_OTHERS}]")
_UNPRINTABLE_KEEP_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")  # keeps \t and \n
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def storable(text: str) -> str:
    """``text`` as valid Unicode (UTF-8 JSON, Redis): lone surrogates become ``\\udXXX``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(_escape, text)
    return text


def storable_data(value: object) -> object:
    """JSON-like data with every string and dictionary key made ``storable``."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, Mapping):
        return {storable(k) if isinstance(k, str) else k: storable_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable_data(v) for v in value]
    return value


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` safe to show on a terminal: control characters, bidirectional controls and lone
    surrogates as visible escapes. ``newlines``: keep line feeds and tabs (not carriage returns)."""
    pattern = _UNPRINTABLE_KEEP_LINES if newlines else _UNPRINTABLE
    return pattern.sub(_escape, text)


def shorten(text: str, width: int, ellipsis: str = "...") -> str:
    """``text`` as it is when it has at most ``width`` characters, else its start and
    ``ellipsis``, ``width`` characters in all (never fewer than the ellipsis)."""
    if len(text) <= width:
        return text
    return text[: max(width - len(ellipsis), 0)] + ellipsis


_SHORT_HEX = 12  # hex digits of a code version shown to people


def short_version(version: str) -> str:
    """A code version for people: ``sha256:`` and its first 12 hex digits; ``builtin`` and
    other versions unchanged."""
    if version.startswith("sha256:"):
        return version[: len("sha256:") + _SHORT_HEX]
    return version


def one_line(value: object, limit: int | None = 80) -> str:
    """``value`` (a string as it is, anything else as its repr) as one printable line of at most
    ``limit`` characters (None: no limit); what is cut ends in ``...``."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:  # an integer too long to print, a hostile __repr__
        text = f"<{type(value).__name__}>"
    if limit is not None:  # escaping only lengthens: what is past limit + 1 is never shown
        text = text[: limit + 1]
    text = printable(text)
    return text if limit is None else shorten(text, limit)
