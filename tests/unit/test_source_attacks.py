"""Hostile inputs to the vehicle data sources: each gives one clear SourceError naming the file
(and the line, frame or signal), never a traceback, a hang or a silently wrong drive."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oodida_edge.sources.base import SourceError
from oodida_edge.sources.mapping import MappingError, load_mapping

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "vehicle-data"
DBC = EXAMPLES / "vehicle.dbc"
MAPPING = EXAMPLES / "mapping.yaml"


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``'s result or exception, failing the test if it takes longer than ``seconds``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # the test inspects it
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds} s (a hang)")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def alias_bomb(levels: int = 9) -> str:
    """Nine levels of ten aliases each: a billion leaves from a few hundred bytes."""
    defs = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    defs += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return ", ".join(defs)


# --- mapping files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("recursive.yaml", "signals: &s\n  speed: {mdf: speed}\n  again: *s\n"),
        ("self.yaml", "signals:\n  speed: &b {mdf: speed, offset: *b}\n"),
        ("deep.yaml", "signals: " + "[" * 50_000 + "]" * 50_000 + "\n"),
        ("deep.json", '{"signals": ' + "[" * 50_000 + "]" * 50_000 + "}"),
        ("bomb.yaml", f"signals:\n  speed: {{range: [{alias_bomb()}], mdf: *a8}}\n"),
        ("aliased.yaml", "signals:\n  speed: {mdf: speed, range: &r {a: 1}}\n  rpm: {mdf: rpm, x: *r}\n"),
    ],
)
def test_mapping_recursion_and_alias_bombs_are_one_error(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MappingError, match=str(path)):
        within(10, lambda: load_mapping(path))


def test_mapping_alias_bomb_in_a_mapping_of_mappings_is_quick(tmp_path: Path) -> None:
    lines = ["signals:", "  speed: {mdf: speed}", "  rpm:", "    mdf: rpm", "    x: &m0 {k0: 1, k1: 1}"]
    path = tmp_path / "bomb.yaml"
    nested = "{" + ", ".join(f"k{j}: *m0" for j in range(10)) + "}"
    lines.append(f"    y: &m1 {nested}")
    for i in range(2, 9):
        lines.append(f"    z{i}: &m{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(10)) + "}")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MappingError, match=r"bomb\.yaml line 3: signal 'rpm' has unknown key"):
        within(10, lambda: load_mapping(path))


@pytest.mark.parametrize(
    ("name", "text", "what"),
    [
        ("huge.yaml", "signals:\n  speed: {mdf: speed, scale: 1" + "0" * 400 + "}\n", "scale"),
        ("huge.json", '{"signals": {"speed": {"mdf": "speed", "offset": 1' + "0" * 400 + "}}}", "offset"),
        ("digits.yaml", "signals:\n  speed: {mdf: speed, scale: " + "9" * 5000 + "}\n", "4300 digits"),
        ("digits.json", '{"signals": {"speed": {"mdf": "speed", "scale": ' + "9" * 5000 + "}}}", "JSON"),
    ],
)
def test_mapping_numbers_too_large_are_one_error(tmp_path: Path, name: str, text: str, what: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MappingError, match=what) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value) and len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("dup.yaml", "signals:\n  speed: {mdf: speed}\n  rpm: {mdf: rpm}\n  speed: {mdf: rpm}\n", "line 4"),
        ("dupkey.yaml", "signals:\n  speed:\n    mdf: speed\n    mdf: rpm\n", "line 4"),
        ("dup.json", '{"signals": {"speed": {"mdf": "speed"}, "speed": {"mdf": "rpm"}}}', ""),
    ],
)
def test_mapping_duplicate_keys_are_refused_not_silently_overwritten(
    tmp_path: Path, name: str, text: str, line: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MappingError, match=f"{path.name}{' ' + line if line else ''}.*twice"):
        load_mapping(path)


def test_mapping_that_is_not_a_regular_file_is_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(MappingError, match=f"{fifo}.*not a regular file"):
        within(10, lambda: load_mapping(fifo))
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    with pytest.raises(MappingError, match=f"{zero}.*not a regular file"):
        within(10, lambda: load_mapping(zero))


def test_mapping_too_large_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (5 << 20) + "\nsignals:\n  speed: {mdf: speed}\n")
    with pytest.raises(MappingError, match=f"{path}.*too large"):
        load_mapping(path)


# --- recorded drives --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "mdf", "canlog"])
def test_recorded_drive_that_is_a_fifo_is_refused_without_reading(tmp_path: Path, kind: str) -> None:
    from oodida_edge.sources.select import build_source, parse_source

    suffix = {"csv": ".csv", "mdf": ".mf4", "canlog": ".blf"}[kind]
    fifo = tmp_path / f"drive{suffix}"
    os.mkfifo(fifo)
    dbc = DBC if kind == "canlog" else None
    mapping = MAPPING if kind == "canlog" else None
    spec = parse_source(f"{kind}:{fifo}")
    with pytest.raises(SourceError, match=f"{fifo}.*neither a file nor a directory"):
        within(10, lambda: build_source(spec, [1], dbc=dbc, mapping=mapping))


# --- CAN: an extended id is not the standard id of the same number ----------------------------


def test_canlog_extended_frames_do_not_decode_as_the_standard_message(tmp_path: Path) -> None:
    import can
    import numpy as np

    from oodida_edge.sources.canlog import canlog_source
    from oodida_edge.sources.mapping import load_mapping
    from tests.fakes.canlogs import drive_frames, write_log

    recorded = drive_frames(10.0, noise=False)
    dynamics = 0x1A0  # VehicleDynamics, a standard (11-bit) id in the DBC; the impostors: 29-bit
    impostors = [
        can.Message(timestamp=m.timestamp + 0.005, arbitration_id=0x1A0, is_extended_id=True, data=b"\0" * 8)
        for m in recorded.frames
        if m.arbitration_id == dynamics
    ]
    for suffix in (".blf", ".asc", ".log"):
        frames = sorted([*recorded.frames, *impostors], key=lambda m: m.timestamp)
        log = write_log(frames, tmp_path / f"x{suffix}")
        drive, _ = canlog_source(log, DBC, load_mapping(MAPPING)).drive(1)
        values = recorded.truth["speed"][1]
        assert drive.series["speed"].values.size == values.size
        np.testing.assert_array_equal(drive.series["speed"].values, values)


def test_canbus_extended_frames_do_not_decode_as_the_standard_message() -> None:
    import can

    from oodida_edge.sources.canbus import can_source
    from oodida_edge.sources.mapping import load_mapping

    source = can_source("virtual", "attack-ext", [1], DBC, load_mapping(MAPPING), {})
    device = source.threads[1].device
    device.open()
    try:
        with can.Bus(interface="virtual", channel="attack-ext") as bus:
            bus.send(can.Message(arbitration_id=0x1A0, is_extended_id=True, data=bytes(8)))
            speed = bytes([0, 100, 0, 0, 0, 0, 0, 0])  # 100 * 0.01 km/h
            bus.send(can.Message(arbitration_id=0x1A0, is_extended_id=False, data=speed))
            readings = device.poll()
    finally:
        device.shut()
        source.close()
    assert [(s, v) for s, _, v in readings if s == "speed"] == [("speed", 1.0)]


# --- MDF files --------------------------------------------------------------------------------


def truncated_mdf(tmp_path: Path, name: str) -> Path:
    from tests.fakes.mdffiles import channels_of, simulated_drive, write_mdf

    whole = write_mdf(tmp_path / "whole.mf4", channels_of(*simulated_drive(seconds=30.0)))
    data = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_mdf_is_one_error_and_no_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import sys

    from oodida_edge.sources.mdf import load_mdf

    path = truncated_mdf(tmp_path, "cut.mf4")
    printed: list[Any] = []  # what Python would print as "Exception ignored in ..." with a traceback
    monkeypatch.setattr(sys, "unraisablehook", printed.append)
    with pytest.raises(SourceError, match=f"{path}: not an MDF file asammdf can read"):
        load_mdf(path)
    gc.collect()
    assert printed == []


def test_truncated_mf4_bus_log_is_one_error_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import sys

    from oodida_edge.sources.canlog import canlog_source
    from oodida_edge.sources.mapping import load_mapping
    from tests.fakes.canlogs import drive_frames, write_log

    whole = write_log(drive_frames(10.0).frames, tmp_path / "whole.mf4")
    data = whole.read_bytes()
    path = tmp_path / "cut.mf4"
    path.write_bytes(data[: len(data) // 2])
    printed: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)
    with pytest.raises(SourceError, match=f"{path}: python-can cannot open this .mf4 log"):
        canlog_source(path, DBC, load_mapping(MAPPING)).drive(1)
    gc.collect()
    assert printed == []


def test_truncated_blf_is_refused_not_replayed_half(tmp_path: Path) -> None:
    from oodida_edge.sources.canlog import canlog_source
    from oodida_edge.sources.mapping import load_mapping
    from tests.fakes.canlogs import drive_frames, write_log

    whole = write_log(drive_frames(20.0).frames, tmp_path / "whole.blf")
    data = whole.read_bytes()
    path = tmp_path / "cut.blf"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=f"{path}: .*truncated.*{len(data)} bytes.*{len(data) // 2}"):
        canlog_source(path, DBC, load_mapping(MAPPING)).drive(1)
    canlog_source(whole, DBC, load_mapping(MAPPING)).drive(1)


# --- DBC files --------------------------------------------------------------------------------


def test_binary_dbc_error_shows_no_raw_bytes(tmp_path: Path) -> None:
    from oodida_edge.sources.dbc import load_dbc

    path = tmp_path / "bin.dbc"
    path.write_bytes(b"BO_ \x1b]0;pwned\x07\x1b[2J" + bytes(range(256)) * 20)
    with pytest.raises(SourceError, match=f"{path} line 1") as caught:
        load_dbc(path)
    text = str(caught.value)
    assert text.isprintable() and len(text) < 300, text


def write_dbc(tmp_path: Path, body: str, name: str = "x.dbc") -> Path:
    path = tmp_path / name
    path.write_text('VERSION ""\n\n' + body)
    return path


def test_two_mapped_messages_sharing_a_frame_id_are_refused(tmp_path: Path) -> None:
    from oodida_edge.sources.dbc import dbc_rules, load_dbc

    dbc = write_dbc(
        tmp_path,
        'BO_ 416 VehicleDynamics: 8 ABS\n SG_ VehicleSpeed : 7|16@0+ (0.01,0) [0|655.35] "km/h" ECM\n'
        'BO_ 416 Other: 8 ABS\n SG_ EngineSpeed : 0|16@1+ (0.25,0) [0|16383.75] "rpm" ECM\n',
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text("signals:\n  speed: {dbc: VehicleSpeed}\n  rpm: {dbc: EngineSpeed}\n")
    with pytest.raises(MappingError, match=r"m\.yaml line 3: signal 'rpm'.*VehicleDynamics.*0x1A0"):
        dbc_rules(load_dbc(dbc), dbc, load_mapping(mapping))


def test_a_signal_with_factor_zero_is_refused(tmp_path: Path) -> None:
    from oodida_edge.sources.dbc import dbc_rules, load_dbc

    zero = 'BO_ 416 VehicleDynamics: 8 ABS\n SG_ VehicleSpeed : 7|16@0+ (0,0) [0|0] "km/h" ECM\n'
    dbc = write_dbc(tmp_path, zero)
    mapping = tmp_path / "m.yaml"
    mapping.write_text("signals:\n  speed: {dbc: VehicleSpeed}\n")
    with pytest.raises(MappingError, match=r"m\.yaml line 2: signal 'speed'.*factor 0"):
        dbc_rules(load_dbc(dbc), dbc, load_mapping(mapping))


# --- a rogue vehicle's registry entry ---------------------------------------------------------


def rogue(**changes: Any) -> dict[str, Any]:
    entry = {
        "signal": "speed",
        "vss": "Vehicle.Speed",
        "unit": "km/h",
        "low": 0.0,
        "high": 200.0,
        "origin": "obd:SPEED",
    }
    info: dict[str, Any] = {
        "client_id": 7,
        "signals": ["speed"],
        "source": "obd",
        "catalogue": [entry],
        "worker": "edge-7@host",
        "hostname": "host",
        "pid": 1,
        "started_at": 0.0,
    }
    for key, value in changes.items():
        if key in entry:
            entry[key] = value
        else:
            info[key] = value
    return info


def test_a_well_formed_entry_decodes() -> None:
    from oodida_core.protocol.wire import ClientInfo, decode

    assert decode(ClientInfo, rogue()).catalogue[0].vss == "Vehicle.Speed"


@pytest.mark.parametrize(
    "changes",
    [
        {"low": float("nan")},
        {"high": float("inf")},
        {"low": 10.0, "high": -10.0},
        {"signal": "Vehicle.Speed\u200b"},  # looks like Vehicle.Speed on a terminal
        {"vss": "Vehicle.Sp\u0435ed"},  # a Cyrillic e
        {"signals": ["speed", "Vehicle.Speed\u200b"]},
        {"signals": [f"Vehicle.S{i}" for i in range(1001)]},
        {"signals": ["x" * 2000]},
        {"worker": "w" * 100_000},
        {"hostname": "h" * 100_000},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_rogue_vehicles_registry_entry_is_refused(changes: dict[str, Any]) -> None:
    from oodida_core.protocol.errors import MessageError
    from oodida_core.protocol.wire import ClientInfo, decode

    with pytest.raises(MessageError, match="malformed ClientInfo"):
        decode(ClientInfo, rogue(**changes))


# --- the command line -------------------------------------------------------------------------


def edge_check(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``oodida-edge --clients 1 ARGV --check`` in process: its exit status must be 2 and its
    stderr one line; that line."""
    from oodida_edge._worker import main

    with pytest.raises(SystemExit) as caught:
        main(["--clients", "1", *argv, "--check"])
    err = capsys.readouterr().err
    assert caught.value.code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("oodida-edge: "), err
    return lines[0]


@pytest.mark.parametrize("option", ["source", "replay", "dbc", "mapping"])
def test_a_symlink_loop_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str) -> None:
    loop = tmp_path / f"loop.{ {'source': 'mf4', 'replay': 'csv', 'dbc': 'dbc', 'mapping': 'yaml'}[option] }"
    loop.symlink_to(loop.name)
    argv = {
        "source": ["--source", f"mdf:{loop}"],
        "replay": ["--replay", str(loop)],
        "dbc": ["--source", f"canlog:{tmp_path}", "--dbc", str(loop)],
        "mapping": ["--source", f"mdf:{tmp_path}", "--mapping", str(loop)],
    }[option]
    line = edge_check(capsys, *argv)
    assert "symlink loop" in line or "symbolic links" in line, line  # Python 3.13 resolves loops


# --- a long CAN log ---------------------------------------------------------------------------


def test_a_long_can_log_is_held_in_a_few_bytes_a_frame(tmp_path: Path) -> None:
    """A 10-million-frame log (an hour of a car's bus) must not need gigabytes: the frames kept
    for decoding cost tens of bytes each, not a Python object each."""
    import tracemalloc

    from oodida_edge.sources.canlog import load_canlog
    from oodida_edge.sources.dbc import dbc_rules, load_dbc

    n = 60_000
    path = tmp_path / "long.log"
    start = 1_765_000_000.0
    payload = {0x0C0: "E02E00005A000000", 0x1A0: "0064000000000000", 0x3B0: "B0042800"}
    ids = list(payload)
    with path.open("w") as f:
        f.writelines(
            f"({start + k * 0.001:.6f}) can0 {ids[k % 3]:03X}#{payload[ids[k % 3]]}\n" for k in range(n)
        )
    bound = dbc_rules(load_dbc(DBC), DBC, load_mapping(MAPPING))
    tracemalloc.start()
    try:
        drive = load_canlog(path, bound)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert drive.series["speed"].values.size == n // 3 + (n % 3 > 1)
    assert peak < 100 * n, f"{peak / n:.0f} bytes a frame"


# --- an OBD-II adapter that answers once, then never again -----------------------------------


class HalfDeadAdapter:
    """A pseudo-terminal whose 'adapter' answers the first command (the edge's ATI probe) with
    a prompt and then reads everything and answers nothing: a clone that locks up after its
    reset, a Bluetooth link that drops. python-OBD waits 10 s a read and ten reads a command."""

    def __init__(self) -> None:
        import pty

        self.master, self.slave = pty.openpty()
        self.path = os.ttyname(self.slave)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import select

        answered = False
        while not self.done.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                os.read(self.master, 1024)
            except OSError:
                continue
            if not answered:
                os.write(self.master, b"ELM327 v1.5\r\r>")
                answered = True

    def close(self) -> None:
        self.done.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)


def test_an_adapter_that_goes_mute_after_the_probe_fails_the_start_in_seconds() -> None:
    import time

    from oodida_edge.sources.obd import obd_source

    adapter = HalfDeadAdapter()
    try:
        started = time.monotonic()
        with pytest.raises(SourceError, match=f"adapter {adapter.path} answered, then stopped answering"):
            within(60, lambda: obd_source(adapter.path, [1], timeout=2.0, protocol="6"))
        assert time.monotonic() - started < 20
    finally:
        adapter.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["--source", "obd:/dev/ttyUSB0?timeout=nan"],
        ["--source", "obd:/dev/ttyUSB0?protocol=Z"],
        ["--source", "canlog:/tmp/x.blf"],
    ],
)
def test_a_bad_source_option_names_it_once(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    line = edge_check(capsys, *argv)
    assert line.count("--source") == 1, line


def test_an_unquoted_obd_pid_read_as_octal_says_so(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("signals:\n  engine_temp: {obd: 0105}\n")  # YAML 1.1: the octal number 69
    with pytest.raises(MappingError, match=r"m\.yaml line 2: signal 'engine_temp': .*number 69.*'010D'"):
        load_mapping(path)
    path.write_text("signals:\n  engine_temp: {obd: 0x0105}\n")  # a hexadecimal PID stays accepted
    assert load_mapping(path).rules["engine_temp"].names["obd"] == "0105"


def test_a_number_yaml_reads_as_text_says_how_to_write_it(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("signals:\n  rpm: {mdf: rpm, scale: 6e1}\n")  # YAML 1.1: 6e1 is text, 6.0e+1 a number
    with pytest.raises(MappingError, match=r"line 2: signal 'rpm': scale .*'6e1'.*write 60\.0\)"):
        load_mapping(path)
    path.write_text("signals:\n  rpm: {mdf: rpm, scale: 1e-7}\n")
    with pytest.raises(MappingError, match=r"write 1\.0e-07\)"):
        load_mapping(path)


def test_check_with_several_processes_checks_a_live_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    several = ["--clients", "1-2", "--processes", "2"]
    line = edge_check(capsys, *several, "--source", f"obd:{tmp_path}/rfcomm{{client}}")
    assert f"OBD-II adapter {tmp_path}/rfcomm1: no such device" in line
    can = ["--source", "can:nosuch:x{client}", "--dbc", str(DBC), "--mapping", str(MAPPING)]
    assert "cannot open the CAN bus nosuch:x1" in edge_check(capsys, *several, *can)


def test_a_mapping_without_mdf_keys_says_so(tmp_path: Path) -> None:
    from oodida_edge.sources.mdf import load_mdf
    from tests.fakes.mdffiles import channels_of, simulated_drive, write_mdf

    drive = write_mdf(tmp_path / "drive.mf4", channels_of(*simulated_drive(seconds=10.0)))
    mapping = tmp_path / "can.yaml"
    mapping.write_text("signals:\n  speed: {dbc: VehicleSpeed}\n")
    with pytest.raises(SourceError, match=r"can\.yaml maps no signal to an MDF channel \(key mdf\)"):
        load_mdf(drive, load_mapping(mapping))


# --- replaying a long drive -------------------------------------------------------------------


def test_a_read_of_a_long_recorded_drive_does_not_sort_the_whole_drive() -> None:
    """np.interp(..., period=) sorts and copies the drive's readings at every call: a read of
    10 samples of a 10-million-reading drive took half a second a signal, and 320 MB."""
    import time

    import numpy as np

    from oodida_edge.sources.base import builtin_entry
    from oodida_edge.sources.recorded import Drive, Series

    rng = np.random.default_rng(7)
    n = 2_000_000
    times = np.cumsum(rng.uniform(0.005, 0.015, n)) + 0.3
    values = rng.uniform(0.0, 200.0, n)
    later = Series(times[::7] + 1.0, values[::7] * 30)  # rpm: its first reading 1 s after speed's
    series = {"speed": Series(times, values), "rpm": later}
    drive = Drive.of(Path("long.mf4"), series, [builtin_entry(n, f"mdf:{n}") for n in series])
    # Reads across the loop's wrap (after the last reading, before the first) and inside.
    for name, s in drive.series.items():
        for start in (0.0, 0.001, float(s.times[0]) / 2, drive.period - 0.002, 5000.0, 123.456):
            got = drive.resample(name, start, 50, 1000)
            t = np.remainder(start + np.arange(50) / 1000, drive.period)
            np.testing.assert_allclose(got, np.interp(t, s.times, s.values, period=drive.period), rtol=1e-9)
    began = time.perf_counter()
    for i in range(40):
        drive.resample("speed", 17.0 * i, 10, 10)
    assert time.perf_counter() - began < 0.5


def test_a_tilde_in_a_source_path_is_the_home_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the shell leaves mdf:~/... alone (not a word start)
    line = edge_check(capsys, "--source", "mdf:~/drives/missing.mf4")
    assert f"no recorded drive at {tmp_path}/drives/missing.mf4" in line, line


# --- the spec side ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [("Vehicle.Sp\u0435ed", "U+0435 at position 11"), ("Vehicle.Speed\u200b", "U+200B at position 14")],
)
def test_a_signal_name_with_a_lookalike_character_says_which(name: str, shown: str) -> None:
    from oodida_core.protocol.errors import SpecError
    from oodida_core.spec.model import LISTING_1_1, validate_spec

    with pytest.raises(SpecError, match=re.escape(f"non-ASCII character {shown}")):
        validate_spec({**LISTING_1_1, "signals": [name]})


def test_a_drive_replaced_by_a_fifo_while_serving_fails_the_read_not_the_worker(tmp_path: Path) -> None:
    from oodida_edge.sources.mdf import mdf_source
    from tests.fakes.mdffiles import channels_of, simulated_drive, write_mdf

    path = write_mdf(tmp_path / "drive.mf4", channels_of(*simulated_drive(seconds=10.0)))
    source = mdf_source(path)
    source.check([1])
    fifo = tmp_path / "new.mf4"
    os.mkfifo(fifo)
    os.replace(fifo, path)  # an operator's copy tool, a log rotation gone wrong
    with pytest.raises(SourceError, match=f"{path}.*not a regular file"):
        within(10, lambda: source.read(1, "a", 0, ["speed"], 10, 10))


def test_a_csv_drive_replaced_by_a_fifo_while_serving_fails_the_read(tmp_path: Path) -> None:
    import shutil

    from oodida_edge.sources.csvfile import ReplaySensors

    path = tmp_path / "drive.csv"
    shutil.copy(EXAMPLES.parent / "drives" / "drive.csv", path)
    source = ReplaySensors(path)
    source.check([1])
    fifo = tmp_path / "new.csv"
    os.mkfifo(fifo)
    os.replace(fifo, path)
    with pytest.raises(SourceError, match=f"{path}.*not a regular file"):
        within(10, lambda: source.read(1, "a", 0, ["speed"], 10, 10))


def write_invalidated(path: Path, values: Any, invalid: Any) -> Path:
    import numpy as np
    from asammdf import MDF, Signal

    mdf = MDF(version="4.10")
    try:
        t = np.arange(len(values)) / 10.0
        signal = Signal(samples=values, timestamps=t, name="speed", unit="km/h", invalidation_bits=invalid)
        mdf.append([signal])
        mdf.save(path, overwrite=True)
    finally:
        mdf.close()
    return path


def test_mdf_samples_marked_invalid_are_not_readings(tmp_path: Path) -> None:
    import numpy as np

    from oodida_edge.sources.mdf import load_mdf

    values = np.full(100, 50.0)
    invalid = np.zeros(100, dtype=bool)
    values[40:45], invalid[40:45] = 0.0, True  # a logger's "no value": 0, flagged invalid
    drive = load_mdf(write_invalidated(tmp_path / "inv.mf4", values, invalid))
    assert drive.series["speed"].values.size == 95
    assert (drive.series["speed"].values == 50.0).all()
    values[70] = 500.0  # a valid reading out of range, after the invalid ones: its own number
    with pytest.raises(SourceError, match=r"inv2\.mf4 sample 70: signal 'speed'"):
        load_mdf(write_invalidated(tmp_path / "inv2.mf4", values, invalid))


def test_corrupted_mdf_files_give_one_error_each_and_print_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes flipped at random in an MDF4 file: a SourceError each time, nothing on stderr
    (asammdf logs through its own handler to stderr), nothing left for __del__ to print."""
    import gc
    import random
    import sys

    from oodida_edge.sources.mdf import load_mdf
    from tests.fakes.mdffiles import channels_of, simulated_drive, write_mdf

    data = write_mdf(tmp_path / "whole.mf4", channels_of(*simulated_drive(seconds=30.0))).read_bytes()
    printed: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)
    rng = random.Random(3)
    for k in range(150):
        broken = bytearray(data)
        for _ in range(rng.choice([1, 4, 16])):
            broken[rng.randrange(64, len(broken))] = rng.randrange(256)
        path = tmp_path / f"broken{k}.mf4"
        path.write_bytes(bytes(broken))
        with contextlib.suppress(SourceError):  # anything else fails the test
            load_mdf(path)
        path.unlink()
    gc.collect()
    assert printed == []
    assert capfd.readouterr().err == ""
