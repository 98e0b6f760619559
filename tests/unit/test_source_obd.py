"""Live OBD-II (oodida_edge/sources/obd.py) against a fake ELM327 adapter (tests/fakes/elm327.py)
on a pseudo-terminal and on 127.0.0.1 TCP, read through python-OBD."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from oodida_edge.sources.base import SignalUnavailable, SourceError
from oodida_edge.sources.mapping import MappingError, load_mapping
from oodida_edge.sources.obd import ObdSource, obd_source
from tests.fakes.elm327 import FakeDrive, FakeElm327

ROOT = Path(__file__).resolve().parents[2]

# Values the PIDs encode exactly (speed 1 km/h, rpm 1/4, temperature 1 degC, fuel 1/20 l/h,
# voltage 1/1000 V steps), so that a constant comes back exactly.
CONSTANT = {"rpm": 2143.25, "engine_temp": 88.0, "fuel_rate": 3.45, "battery_voltage": 13.812}
# Speed is a triangle, 40 -> 60 -> 40 km/h over 2 s, looping: readings follow the clock.
TRIANGLE = ([0.0, 1.0, 2.0], [40.0, 60.0, 40.0])
# The mean of 20 readings at 10 Hz (one period) is 50 km/h give or take: 0.5 (speed is sent in
# whole km/h), 0.1 (20 samples of a triangle, whatever their phase: computed), and 0.4 for an
# answer up to 20 ms late (the car reads its speed when asked, we timestamp the answer; the
# speed changes by 20 km/h a second).
SPEED_TOLERANCE = 1.0


def drive() -> FakeDrive:
    return FakeDrive({"speed": TRIANGLE, **{k: ([0.0], [v]) for k, v in CONSTANT.items()}})


@pytest.fixture()
def adapter(tmp_path: Path) -> Iterator[FakeElm327]:
    with FakeElm327(drive(), link=tmp_path / "obd1") as fake:
        yield fake


@pytest.fixture()
def source(adapter: FakeElm327) -> Iterator[ObdSource]:
    src = obd_source(adapter.path, [1], None, protocol="6")
    yield src
    src.close()


def check_readings(src: ObdSource, client: int) -> None:
    signals = ["speed", "rpm", "engine_temp", "fuel_rate", "battery_voltage"]
    got = src.read(client, "a1", 0, signals, 20, 10)
    assert all(v.shape == (20,) for v in got.values())
    assert float(np.mean(got["speed"])) == pytest.approx(50.0, abs=SPEED_TOLERANCE)
    assert np.ptp(got["speed"]) > 10  # the triangle, not a constant
    for name, value in CONSTANT.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, err_msg=name)


def test_readings_through_a_pseudo_terminal_average_to_the_drive_the_car_was_given(
    source: ObdSource,
) -> None:
    assert [(e.signal, e.origin) for e in source.catalogue(1)] == [
        ("speed", "obd:SPEED"),
        ("rpm", "obd:RPM"),
        ("fuel_rate", "obd:FUEL_RATE"),
        ("engine_temp", "obd:COOLANT_TEMP"),
        ("battery_voltage", "obd:CONTROL_MODULE_VOLTAGE"),
    ]
    check_readings(source, 1)


def test_a_wifi_adapter_on_tcp_found_by_protocol_search_is_read_the_same_way() -> None:
    with FakeElm327(drive(), pty=False, tcp=True) as fake:
        src = obd_source(fake.url, [7], None)  # no protocol: python-OBD searches (ATSP0)
        try:
            check_readings(src, 7)
        finally:
            src.close()


def test_each_client_reads_its_own_adapter_through_the_client_placeholder(tmp_path: Path) -> None:
    slow = FakeDrive.constant(speed=30.0, rpm=900.0)
    fast = FakeDrive.constant(speed=110.0, rpm=3000.0)
    with FakeElm327(slow, link=tmp_path / "obd3"), FakeElm327(fast, link=tmp_path / "obd4"):
        src = obd_source(str(tmp_path / "obd{client}"), [3, 4], None, protocol="6")
        try:
            assert src.read(3, "a", 0, ["speed", "rpm"], 3, 10)["speed"].tolist() == [30.0] * 3
            assert src.read(4, "a", 0, ["speed", "rpm"], 3, 10)["rpm"].tolist() == [3000.0] * 3
        finally:
            src.close()


def test_a_pid_the_car_does_not_support_is_logged_once_and_left_out_of_the_catalogue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeElm327(drive(), supported=[0x0D, 0x0C], link=tmp_path / "obd1") as fake:
        src = obd_source(fake.path, [1], None, protocol="6")
        try:
            assert [e.signal for e in src.catalogue(1)] == ["speed", "rpm"]
            with pytest.raises(SourceError, match=r"client 1 does not deliver 'engine_temp'"):
                src.read(1, "a", 0, ["engine_temp"], 2, 10)
        finally:
            src.close()
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 3 and any("COOLANT_TEMP (0105)" in m for m in left_out)


def test_a_mode_01_pid_maps_like_its_command_name(adapter: FakeElm327, tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("signals:\n  speed:\n    obd: '010D'\n  rpm:\n    obd: 0x010C\n    scale: 0.5\n")
    src = obd_source(adapter.path, [1], load_mapping(path), protocol="6")
    try:
        assert [e.origin for e in src.catalogue(1)] == ["obd:010D", "obd:010C"]
        assert src.read(1, "a", 0, ["rpm"], 3, 10)["rpm"].tolist() == [CONSTANT["rpm"] / 2] * 3
    finally:
        src.close()


def test_a_device_path_that_does_not_exist_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "rfcomm9"
    with pytest.raises(SourceError, match=rf"^OBD-II adapter {missing}: no such device"):
        obd_source(str(missing), [1], None)


def test_a_mapping_naming_an_unknown_obd_command_names_the_file_line_and_signal(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("signals:\n  speed:\n    obd: SPEED\n  rpm:\n    obd: ENGINE_SPEEED\n")
    with pytest.raises(
        MappingError, match=rf"^{path} line 4: signal 'rpm': 'ENGINE_SPEEED' is not a python-OBD"
    ):
        obd_source(str(tmp_path / "never-opened"), [1], load_mapping(path))


def test_a_command_that_is_not_live_data_is_refused_before_any_query(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("signals:\n  speed:\n    obd: CLEAR_DTC\n")  # mode 04 clears trouble codes
    with pytest.raises(
        MappingError, match=r"line 2: signal 'speed': OBD command 'CLEAR_DTC' is not live data"
    ):
        obd_source(str(tmp_path / "never-opened"), [1], load_mapping(path))


def test_an_adapter_that_never_answers_fails_within_the_timeout(tmp_path: Path) -> None:
    with FakeElm327(drive(), link=tmp_path / "obd1", silent=True) as fake:
        began = time.monotonic()
        with pytest.raises(SourceError, match=rf"^OBD-II adapter {fake.path} did not answer within 0.5 s"):
            obd_source(fake.path, [1], None, timeout=0.5)
        assert time.monotonic() - began < 2.0  # python-OBD alone waits 10 s a command


def test_a_car_with_the_ignition_off_is_refused_with_python_obds_status(tmp_path: Path) -> None:
    refused = r"could not reach the car \(status 'OBD Connected'"
    with (
        FakeElm327(drive(), link=tmp_path / "obd1", ignition=False) as fake,
        pytest.raises(SourceError, match=refused),
    ):
        obd_source(fake.path, [1], None, protocol="6")


def test_a_car_supporting_no_mapped_signal_is_refused(tmp_path: Path) -> None:
    with FakeElm327(FakeDrive.constant(speed=1.0), link=tmp_path / "obd1") as fake:
        path = tmp_path / "map.yaml"
        path.write_text("signals:\n  rpm:\n    obd: RPM\n")
        with pytest.raises(SourceError, match=r"supports none of the signals .*map.yaml maps: rpm \(RPM\)"):
            obd_source(fake.path, [1], load_mapping(path), protocol="6")


def test_a_port_without_the_client_placeholder_serves_one_client_only() -> None:
    with pytest.raises(SourceError, match=r"serves one client, not 2: put \{client\} in it"):
        obd_source("/dev/rfcomm0", [1, 2], None)


def test_unplugging_fails_the_read_and_plugging_back_serves_the_next_one(
    adapter: FakeElm327, source: ObdSource
) -> None:
    source.read(1, "a", 0, ["speed"], 2, 10)
    failure: list[BaseException] = []

    def long_read() -> None:
        try:
            source.read(1, "a", 1, ["speed"], 50, 10)  # 5 s
        except BaseException as exc:
            failure.append(exc)

    reader = threading.Thread(target=long_read)
    reader.start()
    time.sleep(0.5)
    adapter.unplug()
    reader.join(10.0)
    assert not reader.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], SignalUnavailable)
    reason = str(failure[0])
    assert reason.startswith(f"OBD-II adapter {adapter.path} (client 1) is unavailable since")
    assert "it is being retried" in reason and ("no such device" in reason or "stopped answering" in reason)
    time.sleep(1.0)
    adapter.plug()
    deadline = time.monotonic() + 15.0
    while True:  # the device thread retries with backoff (at most BACKOFF_MAX = 5 s apart)
        try:
            got = source.read(1, "a", 2, ["speed", "rpm"], 5, 10)
            break
        except SignalUnavailable:
            assert time.monotonic() < deadline, "the adapter was not reconnected"
            time.sleep(0.2)
    assert got["rpm"].tolist() == [CONSTANT["rpm"]] * 5
    assert got["speed"].min() >= 40.0 and got["speed"].max() <= 60.0


def test_without_python_obd_the_source_names_the_extra_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['obd'] = None\n"
        "from oodida_edge.sources.obd import obd_source\n"
        "obd_source('/dev/ttyUSB0', [1], None)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "oodida_edge.sources.base.MissingExtra: this source needs the Python package 'obd'"
    )
    assert last.endswith("install it with: pip install 'oodida[obd]'")


@pytest.mark.slow
def test_an_adapter_that_falls_silent_fails_reads_and_is_reconnected_once_it_answers(
    adapter: FakeElm327,
) -> None:
    src = obd_source(adapter.path, [1], None, timeout=0.5, protocol="6")
    try:
        src.read(1, "a", 0, ["speed"], 2, 10)
        adapter.silent = True  # powered, but it no longer answers (a hung Wi-Fi adapter)
        began = time.monotonic()
        with pytest.raises(SignalUnavailable, match=r"no reading of 'speed' for 3\.\d s"):
            src.read(1, "a", 1, ["speed"], 50, 10)
        thread = src.threads[1]
        # python-OBD retries a silent read ten times, each waiting 0.5 s here for a byte: ~7 s.
        while thread.available or "did not answer within 0.5 s" not in thread.reason:
            assert time.monotonic() - began < 30, thread.reason
            time.sleep(0.2)
        with pytest.raises(SignalUnavailable, match=r"cannot connect: OBD-II adapter .* did not answer"):
            src.read(1, "a", 2, ["speed"], 2, 10)
        adapter.silent = False
        deadline = time.monotonic() + 15.0
        while not thread.available:
            assert time.monotonic() < deadline, thread.reason
            time.sleep(0.2)
        assert src.read(1, "a", 3, ["rpm"], 3, 10)["rpm"].tolist() == [CONSTANT["rpm"]] * 3
    finally:
        src.close()
