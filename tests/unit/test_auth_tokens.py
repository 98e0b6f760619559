"""Tokens and their stored form, the wire's and the settings' handling of them (no Redis)."""

from __future__ import annotations

import pytest

from oodida_core.messaging.labels import args_label
from oodida_core.protocol.errors import AuthError, OodidaError, UnknownAssignment
from oodida_core.protocol.wire import (
    TASK_AUTHENTICATE,
    TASK_CANCEL,
    TASK_ROLLBACK,
    TASK_START,
    Reply,
    SubmitRequest,
)
from oodida_core.security.auth import (
    SCHEME,
    check_user_name,
    credential_for,
    looks_like_token,
    new_token,
    verify,
)
from oodida_core.settings import Settings
from oodida_user.replies import masked, raise_for


def test_a_new_token_has_the_documented_form_and_256_random_bits() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert looks_like_token(token)
        assert token.startswith("oodida_") and len(token) == len("oodida_") + 43
    assert not looks_like_token("oodida_short")
    assert not looks_like_token("x" * 50)


def test_the_stored_credential_verifies_its_token_and_nothing_else() -> None:
    token = new_token()
    credential = credential_for(token)
    assert verify(credential, token)
    assert not verify(credential, new_token())
    assert not verify(credential, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not verify(credential, "")
    assert token not in credential and token[7:] not in credential


def test_the_same_token_is_stored_differently_for_each_user() -> None:
    token = new_token()
    one, two = credential_for(token), credential_for(token)
    assert one != two  # a random salt each time: equal tokens do not show as equal hashes
    assert verify(one, token) and verify(two, token)
    assert credential_for(token, b"s" * 16) == credential_for(token, b"s" * 16)


def test_the_credential_names_its_scheme_salt_and_digest() -> None:
    scheme, salt, digest = credential_for(new_token()).split("$")
    assert scheme == SCHEME == "hmac-sha256"
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32


@pytest.mark.parametrize(
    "credential",
    ["", "garbage", "hmac-sha256$zz$00", "md5$00$" + "0" * 64, "hmac-sha256$00$" + "0" * 63, "a$b$c$d"],
)
def test_a_malformed_or_foreign_credential_verifies_nothing(credential: str) -> None:
    assert not verify(credential, new_token())


def test_user_names_are_plain() -> None:
    assert check_user_name("alice.b-2@x_y") == "alice.b-2@x_y"
    for bad in ("", "a b", "a:b", "x" * 65, "é"):
        with pytest.raises(OodidaError, match="user name"):
            check_user_name(bad)


@pytest.mark.parametrize(
    "task", [TASK_START, TASK_CANCEL, TASK_AUTHENTICATE, TASK_ROLLBACK, "oodida.unknown"]
)
def test_the_token_never_shows_where_celery_and_flower_show_a_request(task: str) -> None:
    token = new_token()
    request = SubmitRequest(user="alice", token=token, request_id="r1", assignment_id="a1", spec={"x": 1})
    message = request.to_wire()
    assert masked(message)["token"] == "***" and message["token"] == token
    for label in (args_label(task, masked(message)), args_label(task, message)):
        assert token not in label and "alice" in label
    assert token not in repr(request)


def test_settings_never_hand_the_token_to_child_processes_or_show_it() -> None:
    token = new_token()
    settings = Settings(user="alice", token=token)
    assert "OODIDA_TOKEN" not in settings.to_env()
    assert token not in repr(settings)
    assert Settings.from_env({"OODIDA_TOKEN": token}).token == token


def test_authentication_is_on_unless_turned_off_explicitly() -> None:
    assert Settings.from_env({}).auth is True
    assert Settings.from_env({"OODIDA_AUTH": "off"}).auth is False
    assert Settings.from_env({"OODIDA_AUTH": "on"}).auth is True
    with pytest.raises(OodidaError, match="OODIDA_AUTH"):
        Settings.from_env({"OODIDA_AUTH": "maybe"})


def test_a_refusal_from_the_cloud_becomes_the_matching_exception() -> None:
    assert raise_for(Reply(ok=True, value={"a": 1})) == {"a": 1}
    with pytest.raises(AuthError, match="wrong"):
        raise_for(Reply(ok=False, error="auth", message="wrong token"))
    with pytest.raises(UnknownAssignment):
        raise_for(Reply(ok=False, error="unknown", message="no assignment"))
    with pytest.raises(OodidaError, match="nothing to roll back"):
        raise_for(Reply(ok=False, error="refused", message="nothing to roll back"))


def test_acl_roles_keep_the_token_hashes_and_code_writes_to_admin_and_cloud() -> None:
    from oodida_core.protocol.keys import Keys
    from oodida_core.security.acl import roles, vehicle_roles

    keys = Keys()
    edge, edge_read = vehicle_roles(keys, "1", [1])
    every = {**roles(keys), "edge": edge, "edge-read": edge_read}
    for name in ("edge", "edge-read", "analyst", "analyst-read"):
        role = every[name]
        assert "*" not in role.keys and keys.users not in role.keys, name
    assert keys.code("*") not in every["edge"].keys  # the edge writer never sees code keys
    for name in ("edge-read", "analyst-read"):
        assert "+@read" in every[name].commands and "+@all" not in every[name].commands
    assert "@read" not in every["analyst"].commands  # it publishes; it reads nothing
    assert every["analyst"].keys == ("cloud",)  # no kombu binding sets: the library never declares it
    assert "+sadd" not in every["analyst"].commands


def test_a_role_url_carries_the_role_user_and_a_quoted_password() -> None:
    from oodida_core.security.acl import role_url

    url = role_url("redis://127.0.0.1:6390/2", "oodida-edge", "p@ss/word")
    assert url == "redis://oodida-edge:p%40ss%2Fword@127.0.0.1:6390/2"
