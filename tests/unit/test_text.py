"""Text from outside: safe to store (valid UTF-8 JSON) and safe to print (no control characters)."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from oodida_core.protocol.text import one_line, printable, short_version, shorten, storable, storable_data

# Every code point, lone surrogates included (what Python strings can hold).
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF))
BIDI = {"\u061c", "\u200e", "\u200f", "\u2028", "\u2029", *map(chr, range(0x202A, 0x202F))}
BIDI |= set(map(chr, range(0x2066, 0x206A)))


def shows_nothing_a_terminal_obeys(text: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Cs") or c in BIDI for c in text)


def test_a_lone_surrogate_becomes_its_visible_escape_when_stored() -> None:
    assert storable("bad \udc80 byte") == "bad \\udc80 byte"
    assert json.dumps(storable("\ud800"), ensure_ascii=False).encode("utf-8") == b'"\\\\ud800"'


def test_valid_text_is_stored_unchanged_escape_sequences_included() -> None:
    for text in ("", "plain", "ünïcødé 🚗", "a\x1b[2Jb\n", "\\udc80"):
        assert storable(text) is text


def test_stored_data_has_every_string_and_key_made_valid_and_the_rest_kept() -> None:
    data = {"k\udc80": ["v\udfff", 1, 2.5, None, True, {"x": "\ud83d"}], "ok": "fine"}
    assert storable_data(data) == {
        "k\\udc80": ["v\\udfff", 1, 2.5, None, True, {"x": "\\ud83d"}],
        "ok": "fine",
    }
    assert storable_data((1, "a")) == [1, "a"]


def test_terminal_escapes_and_control_characters_are_printed_as_visible_escapes() -> None:
    assert printable("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert printable("csi\x9b2J del\x7f nul\x00 bell\x07") == "csi\\x9b2J del\\x7f nul\\x00 bell\\x07"
    assert printable("evil\u202etxt.py \u2066x\u2069") == "evil\\u202etxt.py \\u2066x\\u2069"
    assert printable("line\u2028sep \udc80") == "line\\u2028sep \\udc80"


def test_newlines_and_tabs_are_kept_only_when_asked_and_carriage_returns_never() -> None:
    assert printable("a\nb\tc\rd") == "a\\x0ab\\x09c\\x0dd"
    assert printable("a\nb\tc\rd", newlines=True) == "a\nb\tc\\x0dd"


def test_printable_text_is_printed_unchanged() -> None:
    for text in ("", "assignment 3f2a of alice: done", "ünïcødé 🚗 ∑", "C:\\path\\m.py"):
        assert printable(text) == text


def test_one_line_shows_any_value_escaped_and_cut_to_its_limit() -> None:
    assert one_line("a\nforged line") == "a\\x0aforged line"
    assert one_line({"k": 1}) == "{'k': 1}"
    assert one_line("x" * 100, 10) == "xxxxxxx..."
    assert one_line("\x1b" * 100, 10) == "\\x1b\\x1..."
    assert one_line("y" * 10_000, None) == "y" * 10_000


def test_one_line_survives_a_value_that_cannot_be_shown() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert one_line(Hostile()) == "<Hostile>"


@given(any_text)
def test_anything_stored_encodes_as_utf8_json(text: str) -> None:
    json.dumps(storable(text), ensure_ascii=False).encode("utf-8")
    json.dumps(storable_data({text: [text]}), ensure_ascii=False).encode("utf-8")


@given(any_text)
def test_anything_printed_holds_nothing_a_terminal_obeys(text: str) -> None:
    shown = printable(text)
    assert shows_nothing_a_terminal_obeys(shown)
    shown.encode("utf-8")
    kept = printable(text, newlines=True)
    assert shows_nothing_a_terminal_obeys(kept.replace("\n", "").replace("\t", ""))


@given(any_text, st.integers(min_value=3, max_value=200))
def test_one_line_is_one_printable_line_within_its_limit(text: str, limit: int) -> None:
    line = one_line(text, limit)
    assert len(line) <= limit and "\n" not in line and shows_nothing_a_terminal_obeys(line)


def test_shorten_keeps_text_that_fits_and_cuts_the_rest_to_its_width_with_an_ellipsis() -> None:
    assert shorten("abc", 3) == "abc"
    assert shorten("", 0) == ""
    assert shorten("abcdef", 5) == "ab..."
    assert shorten("abcdef", 4, ellipsis="…") == "abc…"
    assert shorten("abcdef", 2) == "..."  # never less than the ellipsis itself


@given(any_text, st.integers(min_value=3, max_value=200))
def test_shortened_text_fits_its_width_and_starts_as_the_text_did(text: str, width: int) -> None:
    short = shorten(text, width)
    assert len(short) <= width
    assert short == text or (short.endswith("...") and text.startswith(short[:-3]))


def test_a_code_version_is_shown_as_sha256_and_twelve_hex_digits_and_builtin_as_it_is() -> None:
    assert short_version("sha256:" + "0123456789abcdef" * 4) == "sha256:0123456789ab"
    assert short_version("builtin") == "builtin"
    assert short_version("sha256:abc") == "sha256:abc"
