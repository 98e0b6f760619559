"""Text from outside at the boundaries: wire messages, results of custom code, log lines,
broker URLs. (The pure functions themselves: test_text.py.)"""

from __future__ import annotations

import io
import json
import logging

import pytest

from oodida_core.customcode.results import check_result, encode_result
from oodida_core.protocol.errors import BadArgument, CustomCodeError
from oodida_core.protocol.logs import FORMAT, SafeFormatter
from oodida_core.protocol.wire import (
    DeploymentRecord,
    IterationResult,
    OnboardResult,
    Reply,
    Verdict,
    decode,
)
from oodida_core.settings import Settings, check_redis_url


def test_an_onboard_error_holding_a_lone_surrogate_is_decoded_as_its_visible_escape() -> None:
    raw = json.dumps(
        {
            "assignment_id": "a",
            "iteration": 0,
            "client_id": 1,
            "status": "failed",
            "error": "bad \udc80 byte",
            "started_at": 0,
            "finished_at": 1,
        }
    )
    answer = decode(OnboardResult, raw)
    assert answer.error == "bad \\udc80 byte"


def test_an_iteration_with_lone_surrogates_anywhere_is_stored_as_valid_utf8_json() -> None:
    result = IterationResult(
        index=0,
        value={"k\udc80": ["v\ud800", 1.5]},
        onboard={1: "x\udfff"},
        failed={2: "ValueError: \udc80"},
        discarded={3: "\udc81"},
        error="off-board \udc82",
        started_at=0.0,
        finished_at=1.0,
    )
    text = result.to_json()
    text.encode("utf-8")
    back = decode(IterationResult, text)
    assert back.value == {"k\\udc80": ["v\\ud800", 1.5]}
    assert back.onboard == {1: "x\\udfff"} and back.failed == {2: "ValueError: \\udc80"}
    assert back.discarded == {3: "\\udc81"} and back.error == "off-board \\udc82"


def test_an_iteration_without_surrogates_is_stored_as_pydantic_writes_it() -> None:
    result = IterationResult(index=1, value=[1.0, "\x1b[2J"], failed={1: "é"}, started_at=0, finished_at=1)
    assert result.to_json() == result.model_dump_json()


def test_reasons_and_errors_of_replies_verdicts_and_deployments_are_stored_valid() -> None:
    assert (
        Reply(ok=False, message="\udc80").to_json()
        == '{"ok":false,"error":"","message":"\\\\udc80","value":null}'
    )
    assert Verdict(accepted=False, reason="\udc80", at=0).reason == "\\udc80"
    record = DeploymentRecord(
        id="d", user="u", role="onboard", filename="m.py", status="failed", error="\udc80", created_at=0
    )
    assert record.error == "\\udc80"


def test_a_result_string_with_a_lone_surrogate_is_refused_naming_where_it_is() -> None:
    with pytest.raises(CustomCodeError, match=r"result\[1\]\['a'\] holds a lone surrogate"):
        check_result([1, {"a": "x\udc80"}])
    with pytest.raises(CustomCodeError, match=r"result key 'k\\udc80' holds a lone surrogate"):
        encode_result({"k\udc80": 1})
    assert check_result({"ünï": "cødé 🚗"}) == {"ünï": "cødé 🚗"}


def _log_line(message: str, *args: object, exc: bool = False) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter(FORMAT))
    logger = logging.getLogger(f"oodida.test.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        if exc:
            try:
                raise ValueError("boom \x1b[31m")
            except ValueError:
                logger.exception(message, *args)
        else:
            logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_log_line_quoting_hostile_text_is_one_line_of_visible_escapes() -> None:
    line = _log_line("assignment %s: %s", "a1", "name\n2026-01-01 WARNING forged \x1b[2J \x9b \u202e \udc80")
    assert line.count("\n") == 1 and line.endswith("\n")
    assert "\\x0a2026-01-01 WARNING forged \\x1b[2J \\x9b \\u202e \\udc80" in line
    line.encode("utf-8")


def test_a_traceback_in_the_log_keeps_its_lines_and_escapes_the_rest() -> None:
    text = _log_line("failed: %s", "x", exc=True)
    assert "Traceback (most recent call last):\n" in text and "boom \\x1b[31m" in text
    assert "\x1b" not in text


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://:abc", "Port"),
        ("redis://127.0.0.1:99999999/0", "Port"),
        ("redis://127.0.0.1/notadb", "database"),
        ("foo://127.0.0.1", "scheme"),
        ("http://127.0.0.1/", "scheme"),
        ("unix:///tmp/redis.sock", "scheme"),
        ("nonsense", "scheme"),
        ("redis://[::1/0", "IPv6"),
        ("redis://127.0.0.1/0?socket_timeout=x", "socket_timeout"),
    ],
)
def test_a_bad_broker_url_is_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_redis_url(url)
    with pytest.raises(BadArgument, match="not a Redis URL"):
        Settings.from_env({"OODIDA_REDIS_URL": url})
    with pytest.raises(BadArgument, match="OODIDA_READ_URL"):
        Settings.from_env({"OODIDA_READ_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://u:p%40ss@host:6380/2?ssl_cert_reqs=required",
        "redis://h",
        "redis://h/0?health_check_interval=3",
    ],
)
def test_a_good_broker_url_is_kept_as_given(url: str) -> None:
    assert check_redis_url(url) == url
    assert Settings.from_env({"OODIDA_REDIS_URL": url, "OODIDA_READ_URL": url}).read_url == url
