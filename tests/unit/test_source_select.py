"""``oodida-edge --source``: parsing, the options each kind takes, and the extras it needs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from oodida_edge.sources.base import SourceError
from oodida_edge.sources.select import SourceSpec, build_source, parse_source

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("sim", SourceSpec("sim")),
        ("SIM", SourceSpec("sim")),
        ("csv:/data/drives", SourceSpec("csv", "/data/drives")),
        ("mdf:C:/x.mf4", SourceSpec("mdf", "C:/x.mf4")),
        ("canlog:a.blf", SourceSpec("canlog", "a.blf")),
        ("obd:/dev/ttyUSB0", SourceSpec("obd", "/dev/ttyUSB0")),
        ("obd:socket://127.0.0.1:35000", SourceSpec("obd", "socket://127.0.0.1:35000")),
        ("obd:/dev/obd{client}", SourceSpec("obd", "/dev/obd{client}")),
        (
            "obd:/dev/rfcomm0?protocol=6&timeout=2",
            SourceSpec("obd", "/dev/rfcomm0", options={"protocol": "6", "timeout": "2"}),
        ),
        ("can:socketcan:can0", SourceSpec("can", "can0", "socketcan")),
        (
            "can:slcan:/dev/pts/3?bitrate=500000&tty_baudrate=115200",
            SourceSpec("can", "/dev/pts/3", "slcan", {"bitrate": "500000", "tty_baudrate": "115200"}),
        ),
    ],
)
def test_every_kind_parses_and_prints_back(text: str, spec: SourceSpec) -> None:
    parsed = parse_source(text)
    assert parsed == spec
    assert parse_source(str(parsed)) == parsed
    assert parsed.live == (spec.kind in ("obd", "can"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "--source is empty"),
        ("serial:/dev/x", "unknown kind 'serial'"),
        ("sim:foo", "sim takes no target"),
        ("mdf", "mdf needs a target"),
        ("obd:", "obd needs a target"),
        ("can:can0", "a CAN bus is can:INTERFACE:CHANNEL"),
        ("can:slcan:/dev/x?bitrate", "key=value pairs"),
        ("obd:/dev/x?baud=9600", "takes the options protocol, timeout, not baud"),
        ("obd:?protocol=6", "takes the options"),
    ],
)
def test_a_malformed_source_says_what_is_accepted(text: str, expected: str) -> None:
    with pytest.raises(SourceError, match=expected):
        parse_source(text)


def test_obd_options_are_checked_before_any_adapter_is_opened(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"protocol is an ELM327 protocol number"):
        build_source(parse_source(f"obd:{tmp_path}/tty?protocol=Z"), [1])
    with pytest.raises(SourceError, match=r"timeout is seconds, 0\.1 to 120"):
        build_source(parse_source(f"obd:{tmp_path}/tty?timeout=never"), [1])


def test_options_that_do_not_fit_the_kind_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"needs --dbc FILE"):
        build_source(parse_source("canlog:x.log"), [1])
    with pytest.raises(SourceError, match=r"--dbc applies to CAN sources"):
        build_source(parse_source("sim"), [1], dbc=tmp_path / "x.dbc")
    with pytest.raises(SourceError, match=r"--mapping applies to mdf, canlog, obd, can sources, not csv"):
        build_source(parse_source("csv:x.csv"), [1], mapping=tmp_path / "m.yaml")


def test_the_simulator_delivers_the_six_and_a_bad_csv_drive_is_refused_at_build(tmp_path: Path) -> None:
    sim = build_source(parse_source("sim"), [1, 2])
    assert [e.signal for e in sim.catalogue(2)] == [
        "speed",
        "acceleration",
        "rpm",
        "fuel_rate",
        "engine_temp",
        "battery_voltage",
    ]
    bad = tmp_path / "drive.csv"
    bad.write_text("timestamp,speed\n0,1\n1,ten\n")
    with pytest.raises(SourceError, match=r"drive.csv line 3, column 'speed'"):
        build_source(parse_source(f"csv:{bad}"), [1])


@pytest.mark.parametrize(
    ("source", "blocked", "extra"),
    [
        ("mdf:{tmp}/x.mf4", "asammdf", "mdf"),
        ("canlog:{tmp}/x.log", "cantools", "can"),
        ("obd:{tmp}/tty", "obd", "obd"),
    ],
)
def test_a_source_whose_library_is_missing_names_the_extra(
    tmp_path: Path, source: str, blocked: str, extra: str
) -> None:
    for name in ("x.mf4", "x.log", "tty", "x.dbc"):
        (tmp_path / name).write_text("")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules[{blocked!r}] = None  # as if not installed
        from pathlib import Path
        from oodida_edge.sources.base import MissingExtra
        from oodida_edge.sources.select import build_source, parse_source
        try:
            build_source(parse_source({source.format(tmp=tmp_path)!r}), [1],
                         dbc=Path({str(tmp_path / "x.dbc")!r}) if {extra!r} == "can" else None)
        except MissingExtra as exc:
            print(exc)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert f"pip install 'oodida[{extra}]'" in proc.stdout, proc.stdout + proc.stderr
    assert blocked in proc.stdout
