"""Ctrl-C while waiting for an assignment, against real processes: the library raises one
line naming the assignment, whether it still runs and how to cancel it; the command line
exits 130 with that line (or cancels the assignment when asked to)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest

from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida

OODIDA = str(Path(sys.executable).with_name("oodida"))
STREAM = {**LISTING_1_1, "iterations": 0, "samples": 100, "keep": 10}  # runs until cancelled


def _env(system: LocalSystem, user: str) -> dict[str, str]:
    return {
        **os.environ,
        "OODIDA_REDIS_URL": system.url,
        "OODIDA_USER": user,
        "OODIDA_TOKEN": system.token(user),
        "PYTHONUNBUFFERED": "1",
    }


def _user() -> str:
    return f"ctrlc{time.monotonic_ns()}"


class Pty:
    """A command on a pseudo-terminal of its own, in a process group of its own (the way a
    shell runs it), read through the master side."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # as a terminal has
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.output = b""

    def read_until(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.text)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} within {timeout}s in {self.text!r}"
            self._read(left)
        return found

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], min(timeout, 0.5))
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every holder of the slave side closed it
            return False
        self.output += chunk
        return bool(chunk)

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C

    def finish(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.05):  # what is left in the terminal
            pass
        return self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


def _submitted(pty: Pty) -> str:
    return pty.read_until(r"(?m)^([0-9a-f]{16})$", 60).group(1)


def _first_iteration(o: Oodida, aid: str) -> None:
    deadline = time.monotonic() + 30
    while o.assignment(aid).record().iterations_done < 1:
        assert time.monotonic() < deadline, "the assignment never finished an iteration"
        time.sleep(0.1)


def test_ctrl_c_during_oodida_submit_exits_130_with_one_line_naming_the_cancel_command(
    system: LocalSystem, tmp_path: Path
) -> None:
    user = _user()
    spec = tmp_path / "stream.json"
    spec.write_text(json.dumps({**STREAM, "name": f"interrupted-{user}"}))
    pty = Pty([OODIDA, "submit", str(spec)], _env(system, user))
    with Oodida(system.url, user=user, token=system.token(user)) as o:
        try:
            aid = _submitted(pty)
            _first_iteration(o, aid)
            pty.ctrl_c()
            code = pty.finish(30)
        finally:
            pty.close()
        a = o.assignment(aid)
        try:
            assert code == 130, pty.text
            line = (
                f"oodida: interrupted; assignment {aid} is still running; stop it with: oodida cancel {aid}"
            )
            assert line in pty.text.splitlines(), pty.text
            assert "Traceback" not in pty.text
            assert a.status() == "running"
        finally:
            assert a.cancel(timeout=30).status == "cancelled"


def test_oodida_submit_cancel_on_interrupt_cancels_the_assignment_and_says_so(
    system: LocalSystem, tmp_path: Path
) -> None:
    user = _user()
    spec = tmp_path / "stream.json"
    spec.write_text(json.dumps({**STREAM, "name": f"cancelled-{user}"}))
    pty = Pty([OODIDA, "submit", str(spec), "--cancel-on-interrupt"], _env(system, user))
    with Oodida(system.url, user=user, token=system.token(user)) as o:
        try:
            aid = _submitted(pty)
            _first_iteration(o, aid)
            pty.ctrl_c()
            code = pty.finish(60)
        finally:
            pty.close()
        a = o.assignment(aid)
        if a.status() not in ("cancelled", "done", "failed"):
            a.cancel(timeout=30)
        assert code == 130, pty.text
        assert f"oodida: interrupted; cancelling assignment {aid}" in pty.text
        assert f"oodida: assignment {aid} cancelled after" in pty.text, pty.text
        assert "Traceback" not in pty.text
        assert a.status() == "cancelled"


def test_ctrl_c_during_oodida_results_wait_exits_130_and_names_the_running_assignment(
    system: LocalSystem,
) -> None:
    user = _user()
    with Oodida(system.url, user=user, token=system.token(user)) as o:
        a = o.submit({**STREAM, "name": f"results-{user}"})
        try:
            pty = Pty([OODIDA, "results", a.id, "--wait"], _env(system, user))
            try:
                pty.read_until(f"results-{user}"[:30], 60)  # its progress bar: it is waiting
                pty.ctrl_c()
                code = pty.finish(30)
            finally:
                pty.close()
            assert code == 130, pty.text
            assert f"assignment {a.id} is still running; stop it with: oodida cancel {a.id}" in pty.text
            assert "Traceback" not in pty.text
        finally:
            a.cancel(timeout=30)


CHILD = textwrap.dedent(
    """
    import os, sys
    from oodida_user import Oodida
    from oodida_user.assignment import AssignmentInterrupted
    spec = {**__import__("json").loads(sys.argv[1])}
    o = Oodida()
    a = o.submit(spec)
    print(a.id, flush=True)
    if sys.argv[2] == "iterations":
        for _ in a.iterations():
            pass
    elif sys.argv[2] == "again":
        try:
            a.wait(progress=False)
        except AssignmentInterrupted as exc:
            print("status", a.status(), "ended", exc.ended, flush=True)
            print("cancelled", a.cancel(timeout=30).status, "clients", len(o.clients()), flush=True)
    else:
        a.wait(progress=False)
    """
)


def _interrupted_child(
    system: LocalSystem, tmp_path: Path, how: str
) -> tuple[str, subprocess.CompletedProcess[str], Oodida]:
    user = _user()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    spec = json.dumps({**STREAM, "name": f"child-{how}-{user}"})
    proc = subprocess.Popen(
        [sys.executable, str(script), spec, how],
        env=_env(system, user),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    o = Oodida(system.url, user=user, token=system.token(user))
    try:
        assert proc.stdout is not None
        aid = proc.stdout.readline().strip()
        assert aid, proc.communicate(timeout=10)
        _first_iteration(o, aid)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    except BaseException:
        proc.kill()
        proc.wait()
        o.close()
        raise
    return aid, subprocess.CompletedProcess(proc.args, proc.returncode, out, err), o


@pytest.mark.parametrize("how", ["wait", "iterations"])
def test_ctrl_c_in_the_library_raises_one_line_with_the_cancel_call_and_no_redis_frames(
    system: LocalSystem, tmp_path: Path, how: str
) -> None:
    aid, done, o = _interrupted_child(system, tmp_path, how)
    with o:
        try:
            lines = done.stderr.strip().splitlines()
            assert lines[-1] == (
                f"oodida_user.assignment.AssignmentInterrupted: assignment {aid} is still running "
                f'(Ctrl-C stopped only the waiting): o.assignment("{aid}").cancel() stops it'
            ), done.stderr
            assert "redis/" not in done.stderr and "During handling" not in done.stderr
            traceback = lines[lines.index("Traceback (most recent call last):") :]
            assert len(traceback) <= 8, done.stderr  # the caller's line, the library's, the message
            assert o.assignment(aid).status() == "running"
        finally:
            o.assignment(aid).cancel(timeout=30)


def test_after_ctrl_c_the_same_connection_reads_and_cancels(system: LocalSystem, tmp_path: Path) -> None:
    aid, done, o = _interrupted_child(system, tmp_path, "again")
    with o:
        if o.assignment(aid).status() == "running":
            o.assignment(aid).cancel(timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["status running ended False", "cancelled cancelled clients 5"]


def test_a_second_ctrl_c_during_a_cancel_that_hangs_exits_at_once_saying_it_may_not_have_completed(
    fresh_system: LocalSystem, tmp_path: Path
) -> None:
    user = _user()
    spec = tmp_path / "stream.json"
    spec.write_text(json.dumps({**STREAM, "name": f"hung-cancel-{user}"}))
    pty = Pty([OODIDA, "submit", str(spec), "--cancel-on-interrupt"], _env(fresh_system, user))
    with Oodida(fresh_system.url, user=user, token=fresh_system.token(user)) as o:
        try:
            aid = _submitted(pty)
            _first_iteration(o, aid)
            fresh_system.stop_process("cloud-1", signal.SIGKILL)  # nothing will answer the cancel
            pty.ctrl_c()
            pty.read_until(f"cancelling assignment {aid}", 10)
            time.sleep(0.5)  # the cancel request is waiting for its reply
            pty.ctrl_c()
            started = time.monotonic()
            code = pty.finish(30)
            took = time.monotonic() - started
        finally:
            pty.close()
    assert code == 130, pty.text
    assert took < 3.0, pty.text
    assert (
        f"oodida: interrupted again; the cancel of assignment {aid} may not have completed; "
        f"check with: oodida status {aid}"
    ) in pty.text
    assert "Traceback" not in pty.text
