"""Assume breach: raw, unrestricted Python in the jail, one layer at a time and all together.

Each attack is plain Python (``Sandbox.run_raw``: no restricted compiler, as if it had been
escaped) that returns "SUCCEEDED" or the exception it met. With no layer at all every attack
succeeds (so these tests can fail); each layer alone stops what the table in
``oodida_core.customcode.jail.layers`` says, in its own way (the errno or message asserted here); with
every layer, nothing succeeds, nothing outlives the call and no state reaches the next call.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_core.customcode.check import CodePolicy, MiB
from oodida_core.customcode.jail import LAYERS, probe
from oodida_core.customcode.sandbox import Sandbox

CAPS = probe()
ROOT = os.geteuid() == 0


def _has_capability(bit: int) -> bool:
    status = Path("/proc/self/status").read_text()
    effective = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff"))
    return bool(int(effective, 16) >> bit & 1)


CAP_SYS_RESOURCE = _has_capability(24)  # some containers' root lacks it
POLICY = CodePolicy(time_limit=10.0, memory_limit=512 * MiB)

ATTACK = """
import os, socket, resource, sys, time

def attempt(fn):
    try:
        fn()
        return "SUCCEEDED"
    except BaseException as exc:
        return f"{type(exc).__name__}: {exc}"

def proc_environ(x):
    return open(f"/proc/{x['parent']}/environ", "rb").read()

def data_file(x):
    return open(x["data_file"]).read()

def write_file(x):
    with open(x["write_path"], "w") as f:
        f.write("written from the jail")
        f.flush()

def tcp_connect(x):
    socket.create_connection(("127.0.0.1", x["port"]), timeout=2).close()

def unix_connect(x):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(x["unix"])

def fork_sleeper(x):
    if os.fork() == 0:
        os.nice(19)  # how the test tells it from the fork server's next call process
        time.sleep(30)
        os._exit(0)

def kill_parent(x):
    os.kill(x["parent"], 0)

def raise_rlimit(x):
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # lowering: allowed to anyone
    except BaseException as exc:
        raise RuntimeError(f"cannot even lower a limit: {exc}") from None
    resource.setrlimit(resource.RLIMIT_CORE, (4096, 4096))

def setuid_root(x):
    os.setuid(0)
    if os.getuid() != 0:
        raise RuntimeError("still not root")

def ctypes_load(x):
    import ctypes
    ctypes.CDLL("libc.so.6").getpid()

def sched_other(x):
    os.sched_setaffinity(x["parent"], os.sched_getaffinity(x["parent"]))  # a no-op, if allowed

def aio_quota(x):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    context = ctypes.c_ulong(0)
    if libc.syscall(206, 1, ctypes.byref(context)) != 0:  # io_setup: a host-wide quota
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    libc.syscall(207, context)  # io_destroy

def signal_by_descriptor(x):
    import fcntl, stat
    fd = next(f for f in range(3, 64) if _is_socket(f))
    fcntl.fcntl(fd, fcntl.F_SETOWN, x["parent"])  # SIGIO (or F_SETSIG's signal) to the parent

def _is_socket(fd):
    import stat
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False

def custom_code(x):
    return attempt(lambda: globals()[x["attack"]](x))
"""

ATTACKS = [
    *("proc_environ", "data_file", "write_file", "tcp_connect", "unix_connect"),
    *("fork_sleeper", "kill_parent", "raise_rlimit", "setuid_root", "ctypes_load"),
    *("sched_other", "aio_quota", "signal_by_descriptor"),
]

# What each layer alone does to each attack: a fragment of the outcome.
ERRNO_EACCES = "[Errno 13]"
ERRNO_EPERM = "[Errno 1]"
AUDIT = "the jail refuses"
STOPS: dict[str, dict[str, str]] = {
    "namespaces": {
        "proc_environ": "FileNotFoundError",  # no /proc at all
        "data_file": "FileNotFoundError",  # not in the view
        "write_file": "Error",  # read-only or absent: [Errno 30] or [Errno 2]
        "tcp_connect": "ConnectionRefusedError",  # its own network: nobody listens there
        "unix_connect": "FileNotFoundError",
        "kill_parent": "ProcessLookupError",  # the worker is not in this pid namespace
        "raise_rlimit": "not allowed to raise maximum limit",  # no CAP_SYS_RESOURCE
    },
    "user": {
        "proc_environ": ERRNO_EACCES,
        "data_file": ERRNO_EACCES,
        "write_file": ERRNO_EACCES,
        "kill_parent": ERRNO_EPERM,
        "raise_rlimit": "not allowed to raise maximum limit",
        "setuid_root": ERRNO_EPERM,
    },
    "landlock": {
        "proc_environ": ERRNO_EACCES,
        "data_file": ERRNO_EACCES,
        "write_file": ERRNO_EACCES,
        "tcp_connect": ERRNO_EACCES,  # Landlock ABI 4+
        "kill_parent": ERRNO_EPERM,  # Landlock ABI 6+: signals scoped to the domain
    },
    "seccomp": {
        "tcp_connect": ERRNO_EPERM,
        "unix_connect": ERRNO_EPERM,
        "fork_sleeper": ERRNO_EPERM,
        "kill_parent": ERRNO_EPERM,
        "raise_rlimit": "cannot even lower a limit",  # EPERM, which Python words as a ValueError
        "setuid_root": ERRNO_EPERM,
        "sched_other": ERRNO_EPERM,
        "aio_quota": ERRNO_EPERM,
        "signal_by_descriptor": ERRNO_EPERM,
    },
    "rlimits": {
        "write_file": "[Errno 27]",  # RLIMIT_FSIZE 0: File too large
    },
    "audit": {
        "proc_environ": AUDIT,
        "data_file": AUDIT,
        "write_file": AUDIT,
        "tcp_connect": AUDIT,
        "unix_connect": AUDIT,
        "fork_sleeper": AUDIT,
        "kill_parent": AUDIT,
        "raise_rlimit": AUDIT,
        "ctypes_load": AUDIT,
        "aio_quota": AUDIT,  # through ctypes
    },
}


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Things worth attacking: this process, a private file, a TCP and a Unix listener."""
    home = tmp_path_factory.mktemp("jail-targets")
    home.chmod(0o700)
    secret = home / "secret.txt"
    secret.write_text("OODIDA_ADMIN_URL=redis://admin:password@127.0.0.1/0\n")
    secret.chmod(0o600)
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(home / "redis.sock"))
    unix.listen()
    stop = threading.Event()

    def serve(listener: socket.socket) -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                continue

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in (tcp, unix)]
    for t in threads:
        t.start()
    yield {
        "parent": os.getpid(),
        "data_file": str(secret),
        "write_path": str(home / "written.txt"),
        "port": tcp.getsockname()[1],
        "unix": str(home / "redis.sock"),
    }
    stop.set()
    for t in threads:
        t.join(2)
    tcp.close()
    unix.close()


def attack(box: Sandbox, name: str, targets: dict[str, object]) -> str:
    outcome, _ = box.run_raw(ATTACK, {**targets, "attack": name}, POLICY)
    assert isinstance(outcome, str)
    return outcome


def sleepers(pid: int) -> list[int]:
    """The processes under ``pid`` that fork_sleeper left (nice 19)."""
    found = []
    for child in descendants(pid):
        try:
            stat = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[16]) == 19 and stat[0] != "Z":
            found.append(child)
    return found


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_with_no_layer_every_attack_succeeds(targets: dict[str, object]) -> None:
    if not ROOT:
        pytest.skip("the control needs root: as another user the private file is someone else's")
    attacks = [a for a in ATTACKS if a != "raise_rlimit" or CAP_SYS_RESOURCE]
    with Sandbox(POLICY, max_children=1, layers=frozenset(), raw=True) as box:
        outcomes = {name: attack(box, name, targets) for name in attacks}
    assert outcomes == dict.fromkeys(attacks, "SUCCEEDED")
    Path(str(targets["write_path"])).unlink()


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_alone_stops_what_it_claims_in_its_own_way(layer: str, targets: dict[str, object]) -> None:
    if layer not in CAPS.layers:
        pytest.skip(f"this machine has no {layer} layer: {CAPS.missing.get(layer)}")
    if layer == "user" and not ROOT:
        pytest.skip("the user layer changes the uid only for a root worker")
    if layer == "landlock" and CAPS.landlock_abi < 6:
        pytest.skip("the claims need Landlock ABI 6 (TCP rules and signal scoping)")
    with Sandbox(POLICY, max_children=1, layers=frozenset({layer}), raw=True) as box:
        assert box.layers == {layer}
        outcomes = {name: attack(box, name, targets) for name in STOPS[layer]}
    for name, fragment in STOPS[layer].items():
        assert fragment in outcomes[name], (name, outcomes[name])
    assert not Path(str(targets["write_path"])).exists() or layer == "rlimits"
    Path(str(targets["write_path"])).unlink(missing_ok=True)


def test_with_every_layer_no_attack_succeeds_and_nothing_outlives_the_call(
    targets: dict[str, object],
) -> None:
    with Sandbox(POLICY, max_children=1, raw=True) as box:
        outcomes = {name: attack(box, name, targets) for name in ATTACKS}
        time.sleep(0.2)
        left = sleepers(box.child_pids()[0])
    assert all(o != "SUCCEEDED" for o in outcomes.values()), outcomes
    assert not Path(str(targets["write_path"])).exists()
    assert left == []


def test_a_process_forked_by_a_call_does_not_outlive_it(targets: dict[str, object]) -> None:
    """Even with no layer that refuses fork (the fork server kills what a call left)."""
    with Sandbox(POLICY, max_children=1, layers=frozenset({"namespaces"} & CAPS.layers), raw=True) as box:
        control = subprocess.Popen(["nice", "-n", "19", "sleep", "5"])  # the check can fail:
        try:
            time.sleep(0.1)
            assert sleepers(os.getpid()) == [control.pid]  # it sees a sleeper where there is one
        finally:
            control.kill()
            control.wait()
        assert attack(box, "fork_sleeper", targets) == "SUCCEEDED"
        deadline = time.monotonic() + 5
        while sleepers(box.child_pids()[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleepers(box.child_pids()[0]) == []


STATE = """
import json, builtins, decimal, collections.abc
def custom_code(x):
    seen = [hasattr(json, "left_by_a_call"), hasattr(builtins, "left_by_a_call"),
            decimal.getcontext().prec, isinstance([], collections.abc.Mapping)]
    json.left_by_a_call = builtins.left_by_a_call = True
    decimal.DefaultContext.prec = 3
    decimal.getcontext().prec = 3
    collections.abc.Mapping.register(list)
    return [seen, os_pid()]
def os_pid():
    import os
    return os.getpid()
"""


def test_no_state_and_no_process_is_shared_between_calls() -> None:
    with Sandbox(POLICY, max_children=1, raw=True) as box:
        first, second = (box.run_raw(STATE, None, POLICY)[0] for _ in range(2))
    assert isinstance(first, list) and isinstance(second, list)
    assert first[0] == second[0] == [False, False, 28, False]
    assert first[1] != second[1] or "namespaces" in CAPS.layers  # pids repeat in a fresh namespace


def test_a_call_below_the_operators_minimum_level_is_refused() -> None:
    from oodida_core.customcode.jail import JailSettings

    box = Sandbox(POLICY, jail=JailSettings(minimum="full"))
    try:
        if box.level == "full":
            pytest.skip("this machine has the full jail")
        with pytest.raises(Exception, match="OODIDA_JAIL asks for at least full"):
            box.run_raw("def custom_code(x):\n    return 1\n", None)
    finally:
        box.close()


FORGE = """
import os, stat, struct, time

def channel():
    return next(fd for fd in range(3, 64) if _is_socket(fd))

def _is_socket(fd):
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False

def custom_code(x):
    fd = channel()
    body = x["body"].encode("utf-8") if isinstance(x["body"], str) else bytes(x["body"])
    if x.get("stall"):
        os.write(fd, struct.pack("!i", 100) + b"{")  # a frame begun, never finished
        time.sleep(3600)
    os.write(fd, struct.pack("!i", len(body)) + body)
    os._exit(0)  # the reply is whatever was written above
"""


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"ok": NaN, "out": ""}', "not valid JSON"),
        ('{"ok": Infinity, "out": ""}', "not valid JSON"),
        ('{"ok": 1e400, "out": ""}', "only finite numbers"),
        ('{"ok": "' + "x" * (3 * 1024 * 1024) + '", "out": ""}', "too large"),
        ('{"ok": ' + "[" * 101 + "]" * 101 + ', "out": ""}', "nested more than"),
        ('{"ok": 1, "out": "", "extra": 1}', "wrong shape"),
        ('{"error": "x", "kind": "lies"}', "malformed error"),
        ("[1, 2]", "not a JSON object"),
        ('{"ok": 1, "out": "' + "p" * 10_000 + '"}', "too much printed output"),
        ("\udcff", "not valid JSON"),
    ],
    ids=["nan", "infinity", "overflow", "3MiB", "deep", "extra-key", "bad-kind", "list", "print", "bytes"],
)
def test_the_parent_trusts_nothing_a_call_writes_on_its_channel(body: str, fragment: str) -> None:
    from oodida_core.customcode.sandbox import CustomCodeFailure

    raw = body.encode("utf-8", "surrogateescape")
    with Sandbox(POLICY, max_children=1, raw=True) as box:
        with pytest.raises(CustomCodeFailure) as caught:
            box.run_raw(FORGE, {"body": list(raw)}, POLICY)
        assert fragment in str(caught.value)
        assert len(str(caught.value)) < 500
        assert box.run_raw("def custom_code(x):\n    return 7\n", None, POLICY) == (7, "")


def test_a_call_that_begins_a_reply_and_stalls_is_stopped_at_its_time_limit() -> None:
    from oodida_core.customcode.sandbox import CustomCodeFailure

    policy = CodePolicy(time_limit=1.0, memory_limit=512 * MiB)
    with Sandbox(policy, max_children=1, raw=True) as box:
        started = time.monotonic()
        with pytest.raises(CustomCodeFailure, match="ran longer than 1 s") as caught:
            box.run_raw(FORGE, {"body": [], "stall": True}, policy)
        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < 5
        assert box.run_raw("def custom_code(x):\n    return 7\n", None, policy) == (7, "")


KERNEL_MEMORY = """
import os, select
def custom_code(x):
    out = []
    for what, make in (("pipe", os.pipe), ("epoll", select.epoll)):
        try:
            make()
            out.append(what + " SUCCEEDED")
        except OSError as exc:
            out.append(f"{what} {exc.errno}")
    return out
"""


def test_a_call_cannot_pin_kernel_memory_with_pipes_or_epoll() -> None:
    with Sandbox(POLICY, max_children=1, raw=True) as box:
        outcome, _ = box.run_raw(KERNEL_MEMORY, None, POLICY)
    if "seccomp" in CAPS.layers:
        assert outcome == ["pipe 1", "epoll 1"]  # EPERM
    else:
        pytest.skip("without seccomp only RLIMIT_NOFILE bounds them")
