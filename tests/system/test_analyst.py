"""What the analyst sees against a live system: the progress bar (on a terminal, through a
pseudo-terminal), the answered count, and a results plot across a mid-assignment deploy.

The fleet: clients 1 and 2 answer at once, client 3 is real-time (samples / frequency seconds
a task), so every iteration stays open long enough to be watched half-answered.
"""

from __future__ import annotations

import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_ops.local import LocalSystem
from oodida_user import Oodida

SLOW = 3
SPEC = {
    "name": "Bar test",
    "mode": "measurement",
    "clients": [1, 2, SLOW],
    "signals": "speed",
    "onboard": "average",
    "offboard": "average",
    "frequency": 10,
    "samples": 20,  # client 3 takes 2 s an iteration
    "iterations": 2,
}

SCRIPT = f"""
import sys
from oodida_user import Oodida

url, progress, token = sys.argv[1], sys.argv[2] == "on", sys.argv[3]
with Oodida(url, user="bar", token=token) as o:
    result = o.submit({SPEC!r}).wait(timeout=120, progress=progress)
    print("RESULT", result.status, len(result.iterations), flush=True)
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(2, data_dir=tmp_path_factory.mktemp("analyst")) as system:
        system.realtime = True
        system.start_edge("slow", str(SLOW), processes=1)
        system.realtime = False
        system.wait_ready(clients=SLOW)
        yield system


def run_on_terminal(args: list[str], timeout: float = 120) -> str:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal of 120x40; its output."""
    master, slave = pty.openpty()
    termios_size = struct.pack("HHHH", 40, 120, 0, 0)
    import fcntl

    fcntl.ioctl(slave, termios.TIOCSWINSZ, termios_size)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def script(tmp_path: Path) -> Path:
    path = tmp_path / "wait_for_it.py"
    path.write_text(SCRIPT)
    return path


def test_progress_counts_the_clients_that_answered_the_current_iteration(fleet: LocalSystem) -> None:
    with Oodida(fleet.url, user="watcher", token=fleet.token("watcher")) as o:
        a = o.submit({**SPEC, "iterations": 1})
        seen = []
        deadline = time.monotonic() + 60
        while (p := a.progress()).status == "running":
            assert time.monotonic() < deadline
            seen.append((p.iterations_done, p.answered))
            time.sleep(0.1)
        assert (0, 2) in seen, f"clients 1 and 2 answered, client 3 still reading: {seen}"
        assert all(answered is None or answered <= 3 for _, answered in seen)
        final = a.progress()
        assert (final.status, final.iterations_done, final.iterations, final.clients) == ("done", 1, 1, 3)


def test_wait_draws_a_progress_bar_with_the_answers_on_a_terminal(fleet: LocalSystem, tmp_path: Path) -> None:
    out = run_on_terminal([sys.executable, str(script(tmp_path)), fleet.url, "on", fleet.token("bar")])
    assert "RESULT done 2" in out
    assert "Bar test:" in out and "\r" in out, out
    assert "2/2 [" in out and "100%" in out, out  # the bar ends full
    assert "iteration 0: 2/3 clients answered" in out, out  # client 3 was still reading
    # The last frame: every iteration done, and how many answered the last one.
    assert "iteration 1: 3/3 clients answered]" in out.split("RESULT")[0].split("\r")[-2], out


def test_wait_draws_nothing_into_a_pipe_or_with_progress_false(fleet: LocalSystem, tmp_path: Path) -> None:
    path = script(tmp_path)
    piped = subprocess.run(
        [sys.executable, str(path), fleet.url, "on", fleet.token("bar")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "RESULT done 2\n" and piped.stderr == ""
    quiet = run_on_terminal([sys.executable, str(path), fleet.url, "off", fleet.token("bar")])
    assert quiet.strip() == "RESULT done 2"


V1 = "def custom_code(x):\n    return sum(x) / len(x)\n"
V2 = "def custom_code(x):\n    return max(x)\n"


def test_plot_marks_the_version_deployed_mid_assignment(fleet: LocalSystem, tmp_path: Path) -> None:
    module = tmp_path / "speed.py"
    module.write_text(V1)
    with Oodida(fleet.url, user="plotter", token=fleet.token("plotter")) as o:
        v1 = o.deploy_onboard(module, clients=[1, 2, SLOW]).wait(timeout=60).version
        spec = {"name": "rpm: mean, then max", "signals": "rpm", "onboard": "custom", "iterations": 3}
        a = o.submit({**SPEC, **spec})
        v2 = None
        for it in a.iterations(timeout=120):
            if it.index == 0:  # iteration 1 is running: client 3 takes 2 s
                module.write_text(V2)
                v2 = o.deploy_onboard(module, clients=[1, 2, SLOW]).wait(timeout=60).version
        result = a.result()
    assert result.status == "done" and v2 is not None
    first, last = result.iterations[0], result.iterations[-1]
    assert set(first.versions.values()) == {v1} and set(last.versions.values()) == {v2}

    df = result.to_frame()
    assert list(df.columns) == ["client", "iteration", "signal", "value", "version"]
    assert len(df) == sum(len(it.onboard) for it in result.iterations)
    assert set(df[df.iteration == 2].version) == {v2} and set(df.signal) == {"rpm"}
    mean_rpm, max_rpm = df[df.iteration == 0].value.mean(), df[df.iteration == 2].value.mean()
    assert 500 < mean_rpm < max_rpm < 8000

    fig = result.plot()
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["v1", "v2"]  # tags over the axes; the key under the figure names them
    key = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any(line.startswith("v1  iteration") and v1[:19] in line for line in key), key
    assert any(line.startswith("v2  iteration") and v2[:19] in line for line in key), key
    assert any(line.get_xdata()[0] % 1 == 0.5 for line in ax.get_lines()), "a vertical line"
    png = tmp_path / "result.png"
    fig.savefig(png, dpi=100)
    assert png.stat().st_size > 20_000
    print(f"results plot: {png}")
