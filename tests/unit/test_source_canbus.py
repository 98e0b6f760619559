"""Live CAN (oodida_edge/sources/canbus.py) on python-can's in-process ``virtual`` interface: a
player thread sends a recorded drive's frames at their real pace, the source decodes them with
the DBC and a read gives the drive; bad channels, DBCs and options fail at start."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import can
import numpy as np
import pytest

from oodida_edge.sources.base import SourceError
from oodida_edge.sources.canbus import CLOCK_SLACK, CanDevice, can_source, parse_options
from oodida_edge.sources.live import LiveSource
from oodida_edge.sources.mapping import Mapping, MappingError, load_mapping
from tests.fakes.canlogs import (
    CARRIED,
    DBC,
    MAPPING_YAML,
    drive_frames,
    expected_at,
    index_of,
    play,
    with_short_frame,
    write_mapping,
)

SPEED_ID = 0x1A0


@pytest.fixture()
def mapping(tmp_path: Path) -> Mapping:
    return load_mapping(write_mapping(tmp_path))


class Player(threading.Thread):
    """Plays a client's recorded drive on a virtual channel, stamping each frame when sent."""

    def __init__(self, channel: str, client: int, seconds: float, short_at: int | None = None) -> None:
        super().__init__(daemon=True)
        frames = drive_frames(seconds, client).frames
        if short_at is not None:
            frames = with_short_frame(frames, index_of(frames, SPEED_ID, short_at))
        self.frames = frames
        self.bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
        self.stop_event = threading.Event()
        self.sent: list[tuple[float, can.Message]] = []

    def run(self) -> None:
        play(self.bus, self.frames, self.stop_event, self.sent)

    def close(self) -> None:
        self.stop_event.set()
        self.join(5)
        self.bus.shutdown()


def connected(source: LiveSource, *clients: int) -> None:
    """Wait until the clients' buses are open (a read before that fails: not connected yet)."""
    deadline = time.monotonic() + 5
    while not all(source.threads[c].available for c in clients):
        assert time.monotonic() < deadline, [source.threads[c].status() for c in clients]
        time.sleep(0.02)


@pytest.fixture()
def players() -> Iterator[list[Player]]:
    started: list[Player] = []
    yield started
    for player in started:
        player.close()


def test_reads_on_a_virtual_bus_give_the_drive_each_clients_player_sends(
    mapping: Mapping, players: list[Player]
) -> None:
    channel = f"oodida-{uuid.uuid4().hex[:8]}-{{client}}"
    source = can_source("virtual", channel, [1, 2], DBC, mapping, {})
    try:
        for client in (1, 2):
            players.append(Player(channel.replace("{client}", str(client)), client, seconds=8.0))
        source.start()
        connected(source, 1, 2)
        for player in players:
            player.start()
        time.sleep(0.5)
        samples, frequency = 40, 20  # 2 s of readings
        got, began = {}, {}
        for client in (1, 2):
            began[client] = time.time()
            got[client] = source.read(client, "a", 0, list(CARRIED), samples, frequency)
        for client, player in zip((1, 2), players, strict=True):
            sent = expected_at(list(player.sent))
            for signal, (times, values) in sent.items():
                # The buffer holds exactly what the player sent: its send times, cantools' values.
                kept_t, kept_v = source.buffers[client].window(signal, began[client], began[client] + 1.9)
                assert kept_t.size > 5, signal
                index = np.searchsorted(times, kept_t)
                np.testing.assert_array_equal(times[index], kept_t)
                np.testing.assert_array_equal(values[index], kept_v)
                # read() interpolates from its own start, taken within 10 ms of `began` (the
                # test's clock just before the call): the average over 2 s then differs from
                # numpy's at those times by at most 10 ms times the signal's steepest slope.
                at = began[client] + np.arange(samples) / frequency
                slope = float(np.abs(np.diff(values) / np.diff(times)).max())
                expected = np.interp(at, times, values)
                assert got[client][signal].shape == (samples,)
                assert abs(got[client][signal].mean() - expected.mean()) <= 0.01 * slope + 1e-9, (
                    client,
                    signal,
                )
        assert any(not np.allclose(got[1][s], got[2][s]) for s in CARRIED)  # two buses, two drives
    finally:
        source.close()
    assert all(not t.is_alive() for t in source.threads.values())


def test_frames_too_short_for_their_message_are_skipped_and_the_bus_stays_up(
    mapping: Mapping, players: list[Player]
) -> None:
    channel = f"oodida-{uuid.uuid4().hex[:8]}"
    source = can_source("virtual", channel, [7], DBC, mapping, {})
    try:
        players.append(Player(channel, 7, seconds=4.0, short_at=50))  # the 51st speed frame, at 1 s
        source.start()
        connected(source, 7)  # before the player starts: every frame it sends is received
        players[0].start()
        got = source.read(7, "a", 0, ["speed", "rpm"], 50, 25)
        assert got["speed"].shape == (50,)
        players[0].close()
        time.sleep(1.0)  # the device thread takes what is still queued
        kept, _ = source.buffers[7].window("speed", 0.0, time.time() + 10)
        sent = [at for at, m in players[0].sent if m.arbitration_id == SPEED_ID]
        short = [at for at, m in players[0].sent if m.arbitration_id == SPEED_ID and len(m.data) == 2]
        assert len(short) == 1
        assert kept.tolist() == [at for at in sent if at != short[0]]  # every other frame decoded
        assert source.threads[7].available
    finally:
        source.close()


def test_a_channel_without_a_client_placeholder_serves_one_client(mapping: Mapping) -> None:
    with pytest.raises(SourceError, match=r"the CAN channel 'bus0' serves one client, not 2; put \{client\}"):
        can_source("virtual", "bus0", [1, 2], DBC, mapping, {})


def test_a_serial_adapter_that_is_not_there_fails_at_start(mapping: Mapping) -> None:
    with pytest.raises(SourceError, match=r"cannot open the CAN bus slcan:/dev/nonexistent for client 1: "):
        can_source("slcan", "/dev/nonexistent", [1], DBC, mapping, {"bitrate": "500000"})


def test_an_unknown_interface_fails_at_start(mapping: Mapping) -> None:
    with pytest.raises(
        SourceError, match=r"cannot open the CAN bus nosuchbus:can0 for client 1: .*nosuchbus"
    ):
        can_source("nosuchbus", "can0", [1], DBC, mapping, {})


def test_a_mapped_signal_missing_from_the_dbc_fails_at_start(tmp_path: Path) -> None:
    mapping = load_mapping(
        write_mapping(tmp_path, MAPPING_YAML.replace("dbc: BatteryVoltage", "dbc: BattVolt"))
    )
    with pytest.raises(
        MappingError, match=r"line \d+: signal 'battery_voltage': .*vehicle\.dbc has no signal 'BattVolt'"
    ):
        can_source("virtual", "unused", [1], DBC, mapping, {})


def test_the_catalogue_is_every_mapped_signal_with_its_dbc_origin(mapping: Mapping) -> None:
    source = can_source("virtual", f"oodida-{uuid.uuid4().hex[:8]}", [3], DBC, mapping, {})
    entries = {e.signal: e.origin for e in source.catalogue(3)}
    assert entries == {
        "speed": "dbc:VehicleDynamics.VehicleSpeed",
        "rpm": "dbc:EngineSpeed",
        "fuel_rate": "dbc:FuelRate",
        "engine_temp": "dbc:EngineCoolantTemp",
        "acceleration": "dbc:LongitudinalAccel",
        "battery_voltage": "dbc:BatteryVoltage",
        "Vehicle.Exterior.AirTemperature": "dbc:AmbientTemp",
    }
    assert source.catalogue(4) == ()


def test_bus_options_are_converted_from_text() -> None:
    assert parse_options({"bitrate": "500000", "fd": "true", "sleep_after_open": "0.5", "serial": "abc"}) == {
        "bitrate": 500000,
        "fd": True,
        "sleep_after_open": 0.5,
        "serial": "abc",
    }
    with pytest.raises(SourceError, match=r"bitrate must be an integer .*'fast'"):
        parse_options({"bitrate": "fast"})


def test_an_adapters_own_clock_is_anchored_to_the_hosts() -> None:
    device = CanDevice("virtual", "x", {}, {})
    now = time.time()
    assert device.host_time(now - 0.2) == pytest.approx(now - 0.2)  # on the host clock: kept
    first = device.host_time(12.0)  # seconds since the adapter's power-on
    assert first == pytest.approx(time.time(), abs=0.05)
    assert device.host_time(12.25) - first == pytest.approx(0.25)  # its own spacing is kept
    wrapped = device.host_time(0.5)  # slcan's millisecond counter wraps after 60 s
    assert abs(wrapped - time.time()) < CLOCK_SLACK
