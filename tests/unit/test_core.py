"""Settings, the Celery app's configuration, wire decoding, and the embedded Redis launcher."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from oodida_core.messaging.celery_app import make_celery_app
from oodida_core.protocol.errors import MessageError, OodidaError
from oodida_core.protocol.wire import OnboardResult, SubmitRequest, decode
from oodida_core.settings import Settings
from oodida_ops.redis_server import EmbeddedRedis


def test_settings_come_from_oodida_variables_and_explicit_values_win() -> None:
    s = Settings.from_env(
        {
            "OODIDA_REDIS_URL": "redis://127.0.0.1:1/2",
            "OODIDA_HEARTBEAT_INTERVAL": "0.5",
            "OODIDA_USER": "env",
        },
        user="explicit",
    )
    assert s.redis_url == "redis://127.0.0.1:1/2" and s.heartbeat_interval == 0.5 and s.user == "explicit"
    assert Settings.from_env(s.to_env()) == s


def test_a_bad_setting_names_the_variable() -> None:
    with pytest.raises(OodidaError, match="OODIDA_HEARTBEAT_INTERVAL"):
        Settings.from_env({"OODIDA_HEARTBEAT_INTERVAL": "soon"})


def test_the_celery_app_is_configured_as_the_project_requires() -> None:
    app = make_celery_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    c = app.conf
    assert c.task_serializer == "json" and c.accept_content == ["json"] and c.result_serializer == "json"
    assert c.worker_send_task_events and c.task_send_sent_event
    assert c.task_acks_late and c.worker_prefetch_multiplier == 1
    assert c.broker_transport_options["priority_steps"] == [0]
    assert c.result_expires >= 86400 and c.result_chord_ordered
    assert c.broker_transport_options["visibility_timeout"] >= c.result_expires


def test_decode_turns_every_malformation_into_a_message_error() -> None:
    good = {"assignment_id": "a1", "user": "u", "spec": {}}
    assert decode(SubmitRequest, good).user == "u"
    for bad in (
        None,
        3,
        "not json",
        b"\xff",
        {},
        {**good, "extra": 1},
        {**good, "assignment_id": "a b"},
        "[" * 100000,
    ):
        with pytest.raises(MessageError):
            decode(SubmitRequest, bad)
    with pytest.raises(MessageError, match="OnboardResult"):
        decode(OnboardResult, {"status": "weird"})


def test_wire_messages_are_frozen() -> None:
    msg = decode(SubmitRequest, {"assignment_id": "a1", "user": "u", "spec": {}})
    with pytest.raises(ValidationError):
        msg.user = "other"  # type: ignore[misc]


def test_embedded_redis_binds_loopback_persists_append_only_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        cfg = client.config_get("*")
        assert cfg["bind"] == "127.0.0.1" and cfg["appendonly"] == "yes"
        client.close()
    finally:
        server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass
    again = EmbeddedRedis(tmp_path, port=server.port).start()
    try:
        assert redis.Redis.from_url(again.url).get("k") == b"v"
    finally:
        again.stop()
