"""Every string from outside is safe to store and to print, against real processes.

Lone surrogates, control characters and terminal escapes from vehicles (error messages), from
custom code (exception messages), from analysts (spec names, file names) and from the command
line: stored as valid UTF-8 JSON, printed and logged as visible escapes, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_core.protocol.errors import BadArgument, CustomCodeError, OodidaError
from oodida_core.protocol.keys import header_task_id
from oodida_core.protocol.wire import TASK_DEPLOY, DeployRequest
from oodida_ops.local import LocalSystem
from oodida_user import Oodida
from oodida_user.deploy import Deployment

OODIDA = [sys.executable, "-m", "oodida_user._cli"]
# What a hostile string holds: a lone surrogate, a terminal escape (clear screen, red), a C1
# control sequence introducer, a right-to-left override.
HOSTILE = "\\udc80 \\x1b[2J\\x1b[31m \\x9b6n \\u202e"  # as written in a module's source
RAW_ESCAPES = ("\x1b", "\x9b", "\u202e")

SPEC = {
    "name": "hostile \x1b]0;pwned\x07 name \x9b31m",
    "mode": "measurement",
    "clients": [1],
    "signals": "speed",
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 1,
    "samples": 50,
    "iterations": 1,
    "timeout": 5,
}
RAISES = f"""
def custom_code(x):
    if len(x) == 50:
        raise ValueError("bad {HOSTILE} byte")
    return 0.0
"""
SLOWER = """
def custom_code(x):
    total = 0
    for i in range(300_000_000 if len(x) == 321 else 1):
        total += i
    return total
"""
SLOW = """
def custom_code(x):
    if len(x) == 321:
        total = 0
        for i in range(30_000_000):
            total += i
        return total
    return 0.0
"""


@pytest.fixture(scope="module")
def text_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(3, data_dir=tmp_path_factory.mktemp("text"), loglevel="INFO") as s:
        yield s


@pytest.fixture()
def alice(text_system: LocalSystem) -> Iterator[Oodida]:
    name = f"alice{time.monotonic_ns()}"
    with Oodida(text_system.url, user=name, token=text_system.token(name)) as o:
        yield o


def module(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def cli(system: LocalSystem, user: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "OODIDA_REDIS_URL": system.url,
        "OODIDA_USER": user,
        "OODIDA_TOKEN": system.token(user),
    }
    return subprocess.run([*OODIDA, *args], env=env, capture_output=True, timeout=120, check=False)


def assert_printable(output: bytes) -> None:
    text = output.decode("utf-8")  # valid UTF-8: no surrogate reached the terminal either
    for raw in RAW_ESCAPES:
        assert raw not in text, f"{raw!r} reached the terminal: {text[-400:]!r}"
    assert "Traceback" not in text, text[-2000:]


def test_an_onboard_error_holding_a_lone_surrogate_is_stored_and_the_assignment_ends(
    alice: Oodida, tmp_path: Path
) -> None:
    alice.deploy_onboard(module(tmp_path, "raises.py", RAISES), clients=[1]).wait(timeout=30)
    result = alice.submit(SPEC).wait(timeout=60, progress=False)
    assert result.status == "failed" and result.iterations[0].status == "failed"  # its only client
    assert result.error is not None and "\\udc80" in result.error
    error = result.iterations[0].failed[1]
    assert "ValueError" in error and "\\udc80" in error
    error.encode("utf-8")


def test_a_hostile_answer_holding_lone_surrogates_is_stored_escaped(
    alice: Oodida, tmp_path: Path, text_system: LocalSystem
) -> None:
    alice.deploy_onboard(module(tmp_path, "slower.py", SLOWER), clients=[2]).wait(timeout=30)
    a = alice.submit({**SPEC, "clients": [2], "samples": 321, "timeout": 3})
    answer = {
        "assignment_id": a.id,
        "iteration": 0,
        "client_id": 2,
        "status": "ok",
        "value": {"k\udc80": ["v\ud800", 1.5]},
        "version": alice.code_versions([2])["onboard"][2],
        "error": None,
        "started_at": time.time(),
        "finished_at": time.time(),
    }
    # What a compromised vehicle 2 may write: the result of its own task, while the real
    # computation still runs; the cloud reads it at the iteration's deadline.
    alice.app.backend.store_result(header_task_id(a.id, 0, 2), answer, "SUCCESS")
    result = a.wait(timeout=60, progress=False)
    assert result.status == "done"
    assert result.iterations[0].onboard == {2: {"k\\udc80": ["v\\ud800", 1.5]}}


def test_a_raw_deploy_whose_dry_run_error_holds_a_surrogate_fails_naming_it(alice: Oodida) -> None:
    request = DeployRequest(
        deploy_id=f"surrogate-{time.monotonic_ns()}",
        user=alice.user,
        token=alice.settings.token,
        request_id=f"surrogate-{time.monotonic_ns()}",
        role="onboard",
        filename="raises.py",
        source=f'def custom_code(x):\n    raise ValueError("dry {HOSTILE} run")\n',
    )
    alice._send(TASK_DEPLOY, request, f"{request.deploy_id}-deploy")
    deployment = Deployment(alice, request.deploy_id, "", "onboard", "raises.py", request.request_id)
    with pytest.raises(CustomCodeError, match=r"ValueError.*\\udc80"):
        deployment.wait(timeout=30)


@pytest.mark.parametrize("filename", ["evil\x1b[2J.py", "tab\there.py", "nul\x00.py", "del\x7f.py"])
def test_the_cloud_refuses_a_file_name_with_control_characters_as_the_library_does(
    alice: Oodida, tmp_path: Path, filename: str
) -> None:
    with pytest.raises(OodidaError, match="control characters"):
        alice.deploy_onboard(filename)
    request = DeployRequest(
        deploy_id=f"name-{time.monotonic_ns()}",
        user=alice.user,
        token=alice.settings.token,
        request_id=f"name-{time.monotonic_ns()}",
        role="onboard",
        filename=filename,
        source="def custom_code(x):\n    return 1.0\n",
    )
    alice._send(TASK_DEPLOY, request, f"{request.deploy_id}-deploy")
    deployment = Deployment(alice, request.deploy_id, "", "onboard", filename, request.request_id)
    with pytest.raises(OodidaError, match="control characters"):
        deployment.wait(timeout=30)
    assert alice.codestore.deployment(request.deploy_id) is None


def test_hostile_text_reaches_the_command_line_and_the_worker_logs_only_escaped(
    text_system: LocalSystem, tmp_path: Path
) -> None:
    user = f"printer{time.monotonic_ns()}"
    bad = module(tmp_path, "raises.py", RAISES)
    assert cli(text_system, user, "deploy", "onboard", str(bad), "--clients", "3").returncode == 0
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "clients": [3]}))
    submitted = cli(text_system, user, "submit", str(spec))
    assert submitted.returncode == 4, submitted.stderr  # its only client failed: the assignment did
    assert_printable(submitted.stdout + submitted.stderr)
    printed = submitted.stdout.decode()
    assert "(hostile \\x1b]0;pwned\\x07 name \\x9b31m)" in printed  # the spec's name, escaped
    assert "failed: " in printed and "udc80" in printed and "[2J" in printed  # the client's error
    aid = printed.split()[0]
    for command, code in ((["results", aid], 4), (["status", aid], 0), (["results", aid, "--json"], 4)):
        shown = cli(text_system, user, *command)
        assert shown.returncode == code, shown.stderr
        assert_printable(shown.stdout + shown.stderr)
    refused = cli(
        text_system,
        user,
        "deploy",
        "onboard",
        str(module(tmp_path, "dry.py", RAISES.replace("50", "len(x)"))),
    )
    assert refused.returncode == 1 and b"\\udc80" in refused.stderr
    assert_printable(refused.stdout + refused.stderr)
    for log in text_system.log_dir.glob("*.log"):
        assert_printable(log.read_bytes().replace(b"Traceback", b""))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"name": "caf\xe9"}', b"not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, b"nested"),
        (b'{"name": ' + b"[" * 500 + b"]" * 500 + b"}", b"name"),
    ],
)
def test_a_spec_file_that_cannot_be_read_is_an_error_message_not_a_traceback(
    text_system: LocalSystem, tmp_path: Path, content: bytes, message: bytes
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_bytes(content)
    done = cli(text_system, "speccer", "submit", str(spec))
    assert done.returncode in (1, 2) and done.stderr.startswith(b"oodida: "), done.stderr[-2000:]
    assert message in done.stderr
    assert_printable(done.stderr)


@pytest.mark.parametrize("clients", ["k=abc", "k=", "k=-2", "k=1e3", "1-", "x"])
def test_a_bad_clients_option_is_an_error_message_not_a_traceback(
    text_system: LocalSystem, tmp_path: Path, clients: str
) -> None:
    path = module(tmp_path, "m.py", "def custom_code(x):\n    return 1.0\n")
    done = cli(text_system, "clientele", "deploy", "onboard", str(path), "--clients", clients)
    assert done.returncode in (1, 2) and done.stderr.startswith(b"oodida: "), done.stderr[-2000:]
    assert b"--clients" in done.stderr
    assert_printable(done.stderr)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:abc",
        "redis://127.0.0.1:99999999/0",
        "redis://127.0.0.1/notadb",
        "foo://127.0.0.1",
        "http://127.0.0.1/",
        "redis://[::1/0",
        "redis://127.0.0.1/0?socket_timeout=x",
    ],
)
def test_a_bad_broker_url_with_a_read_url_set_is_a_bad_argument(
    text_system: LocalSystem, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("OODIDA_READ_URL", text_system.url)
    monkeypatch.setenv("OODIDA_REDIS_URL", url)
    with (
        pytest.raises(BadArgument, match="not a Redis URL"),
        Oodida(url, user="reader", token=text_system.token("reader"), accept_timeout=5) as o,
    ):
        o.authenticate()
