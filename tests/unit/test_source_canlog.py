"""Recorded CAN logs decoded with a DBC (oodida_edge/sources/canlog.py, dbc.py): every format
python-can writes replays the drive its frames carry; bad DBCs, mappings and logs fail with
one sentence naming the file, the frame (and line) and the signal."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import can
import cantools
import numpy as np
import pytest

from oodida_edge.sources.base import SourceError
from oodida_edge.sources.canlog import canlog_source
from oodida_edge.sources.dbc import FrameDecoder, dbc_rules, load_dbc
from oodida_edge.sources.mapping import Mapping, MappingError, default_mapping, load_mapping
from tests.fakes.canlogs import (
    AMBIENT,
    CARRIED,
    DBC,
    MAPPING_YAML,
    SUFFIXES,
    Recorded,
    broken_dbc,
    drive_frames,
    index_of,
    with_gap,
    with_short_frame,
    with_time_back,
    write_log,
    write_mapping,
)

SPEED_ID = 0x1A0  # VehicleDynamics: speed and acceleration, big-endian, every 20 ms


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    return drive_frames(60.0)


@pytest.fixture()
def mapping(tmp_path: Path) -> Mapping:
    return load_mapping(write_mapping(tmp_path))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_log_format_replays_the_drive_its_frames_carry(
    recorded: Recorded, mapping: Mapping, tmp_path: Path, suffix: str
) -> None:
    # Client 1's own file (1<suffix> in a directory) starts at the drive's start: iteration i
    # reads the drive at (i * samples + k) / frequency seconds, which numpy computes from what
    # cantools decodes frame by frame. Text logs keep times to the microsecond (and a unix time
    # in float64 to 0.24 us), so a reading may differ by 2 us times the signal's steepest slope.
    write_log(recorded.frames, tmp_path / f"1{suffix}")
    source = canlog_source(tmp_path, DBC, mapping)
    source.check([1])
    # The drive loops (recorded.py): its period is its span plus one median step of its densest
    # signal, and a time before a signal's first frame interpolates across that seam.
    origin = min(float(t[0]) for t, _ in recorded.truth.values())
    densest = max((t for t, _ in recorded.truth.values()), key=len)
    period = (
        max(float(t[-1]) for t, _ in recorded.truth.values()) - origin + float(np.median(np.diff(densest)))
    )
    samples, frequency = 250, 25
    for iteration in range(1, 6):  # from 10 s on: away from the loop's seam at 0 s
        got = source.read(1, "a", iteration, list(CARRIED), samples, frequency)
        at = (iteration * samples + np.arange(samples)) / frequency
        for signal, (times, values) in recorded.truth.items():
            expected = np.interp(at, times - origin, values, period=period)
            slack = 2e-6 * float(np.abs(np.diff(values) / np.diff(times)).max()) + 1e-9
            assert got[signal].shape == (samples,)
            assert got[signal].mean() == pytest.approx(expected.mean(), abs=slack), (suffix, signal)
            np.testing.assert_allclose(
                got[signal], expected, rtol=0, atol=slack, err_msg=f"{suffix} {signal}"
            )


def test_the_catalogue_lists_the_mapped_signals_with_their_dbc_origin(
    recorded: Recorded, mapping: Mapping, tmp_path: Path
) -> None:
    source = canlog_source(write_log(recorded.frames, tmp_path / "drive.blf"), DBC, mapping)
    entries = {e.signal: e for e in source.catalogue(3)}
    assert set(entries) == set(CARRIED)
    assert entries["rpm"].origin == "dbc:EngineSpeed"
    assert entries["speed"].origin == "dbc:VehicleDynamics.VehicleSpeed"
    ambient = entries[AMBIENT]
    assert (ambient.unit, ambient.low, ambient.high) == ("degC", -40.0, 60.0)


def test_the_mappings_scale_and_offset_convert_the_decoded_values(recorded: Recorded, tmp_path: Path) -> None:
    text = MAPPING_YAML.replace(
        "dbc: VehicleDynamics.VehicleSpeed", "dbc: VehicleSpeed\n    scale: 0.5\n    offset: 1"
    )
    source = canlog_source(
        write_log(recorded.frames, tmp_path / "1.log"), DBC, load_mapping(write_mapping(tmp_path, text))
    )
    series = source.drive(1)[0].series["speed"]
    np.testing.assert_allclose(series.values, recorded.truth["speed"][1] * 0.5 + 1)


def test_the_default_mapping_finds_dbc_signals_named_like_builtin_signals(
    recorded: Recorded, tmp_path: Path
) -> None:
    text = DBC.read_text(encoding="utf-8").replace("VehicleSpeed", "SPEED").replace("EngineSpeed", "Rpm")
    renamed = tmp_path / "renamed.dbc"
    renamed.write_text(text, encoding="utf-8")
    source = canlog_source(write_log(recorded.frames, tmp_path / "1.trc"), renamed, default_mapping())
    drive = source.drive(1)[0]
    assert set(drive.series) == {"speed", "rpm"}
    np.testing.assert_array_equal(drive.series["rpm"].values, recorded.truth["rpm"][1])


def test_frames_of_unmapped_ids_are_never_decoded(
    recorded: Recorded, mapping: Mapping, tmp_path: Path
) -> None:
    # A 2-byte frame of TyreSensors (8 bytes in the DBC, no mapped signal) does not stop the load.
    frames = list(recorded.frames)
    frames.insert(10, can.Message(timestamp=frames[10].timestamp, arbitration_id=0x500, data=b"\x01\x02"))
    source = canlog_source(write_log(frames, tmp_path / "1.log"), DBC, mapping)
    assert set(source.drive(1)[0].series) == set(CARRIED)


def _random_frames(rng: np.random.Generator, length: int, n: int = 500) -> np.ndarray:
    return rng.integers(0, 256, size=(n, length), dtype=np.uint8)


def _assert_decoder_equals_cantools(db: cantools.database.can.Database, rng: np.random.Generator) -> int:
    checked = 0
    for message in db.messages:
        # Messages cantools decodes: not multiplexed, every signal inside the message.
        signals = list(message.signals)
        if not signals or message.length > 8 or message.is_multiplexed():
            continue
        if not all(_fits(s, message.length) for s in signals):
            continue
        try:  # overlapping signals (vw_pq.dbc has some) make cantools refuse or drop some
            if len(message.decode(bytes(message.length))) != len(signals):
                continue
        except cantools.database.DecodeError:
            continue
        data = _random_frames(rng, message.length)
        ours = FrameDecoder(message, signals).decode(data)
        for i in range(data.shape[0]):
            theirs: Any = message.decode(data[i].tobytes(), decode_choices=False)
            for s in signals:
                expected = float(theirs[s.name])
                assert ours[s.name][i] == expected or (np.isnan(expected) and np.isnan(ours[s.name][i])), (
                    message.name,
                    s.name,
                    data[i].tobytes().hex(),
                )
        checked += len(signals)
    return checked


def _fits(signal: cantools.database.can.Signal, length: int) -> bool:
    first = (
        8 * (signal.start // 8) + 7 - signal.start % 8 if signal.byte_order == "big_endian" else signal.start
    )
    return first >= 0 and first + signal.length <= 8 * length


def test_the_vectorised_decoder_gives_what_cantools_gives_frame_by_frame() -> None:
    assert _assert_decoder_equals_cantools(load_dbc(DBC), np.random.default_rng(16)) >= 10


OPENDBC_CARS = (
    "toyota_prius_2010_pt.dbc",
    "hyundai_2015_ccan.dbc",
    "tesla_powertrain.dbc",
    "ford_fusion_2018_pt.dbc",
    "tesla_model3_vehicle.dbc",
    "vw_pq.dbc",
)


@pytest.mark.skipif(
    importlib.util.find_spec("opendbc") is None, reason="opendbc is not installed (the dev extra has it)"
)
def test_real_cars_dbc_files_load_and_decode_as_cantools_decodes_them() -> None:
    import opendbc  # type: ignore[import-not-found,unused-ignore]

    folder = Path(opendbc.__file__).parent / "dbc"
    rng = np.random.default_rng(5)
    for name in OPENDBC_CARS:
        db = load_dbc(folder / name)
        assert len(db.messages) >= 4, name
        assert _assert_decoder_equals_cantools(db, rng) > 20, name
    # One of opendbc's files has a message name cantools' grammar refuses: the error names its line.
    with pytest.raises(SourceError, match=r"mazda_2017\.dbc line 273, column 10: invalid syntax"):
        load_dbc(folder / "mazda_2017.dbc")


# Bad inputs ------------------------------------------------------------------------------


def test_a_dbc_that_does_not_parse_is_refused_naming_its_line(mapping: Mapping, tmp_path: Path) -> None:
    bad = broken_dbc(tmp_path / "bad.dbc", line=16)
    with pytest.raises(SourceError, match=r"bad\.dbc line 16, column \d+: invalid syntax.*EngineSpeed"):
        canlog_source(tmp_path, bad, mapping)


def test_a_missing_dbc_file_is_refused(mapping: Mapping, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no DBC file at .*nothere\.dbc"):
        canlog_source(tmp_path, tmp_path / "nothere.dbc", mapping)


def test_a_mapping_naming_a_signal_the_dbc_lacks_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    mapping = load_mapping(write_mapping(tmp_path, MAPPING_YAML.replace("dbc: FuelRate", "dbc: FuelRat")))
    with pytest.raises(
        MappingError,
        match=r"mapping\.yaml line 6: signal 'fuel_rate': .*vehicle\.dbc has no signal 'FuelRat'; "
        r"did you mean FuelRate\?",
    ):
        canlog_source(tmp_path, DBC, mapping)


def test_a_mapping_naming_a_multiplexed_signal_is_refused(tmp_path: Path) -> None:
    mapping = load_mapping(
        write_mapping(tmp_path, MAPPING_YAML.replace("dbc: FuelRate", "dbc: TyrePressureFL"))
    )
    with pytest.raises(
        MappingError, match=r"TyreSensors\.TyrePressureFL .* multiplexed signals are not supported"
    ):
        dbc_rules(load_dbc(DBC), DBC, mapping)


def test_a_dbc_without_any_mapped_signal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"vehicle\.dbc: none of the signals the default mapping maps"):
        canlog_source(tmp_path, DBC, default_mapping())


@pytest.mark.parametrize("suffix", [".log", ".asc", ".blf", ".trc"])
def test_a_gap_in_a_log_is_refused_naming_the_frame_and_signal(
    recorded: Recorded, mapping: Mapping, tmp_path: Path, suffix: str
) -> None:
    frames = with_gap(recorded.frames, after=30.0, gap=5.0)
    path = write_log(frames, tmp_path / f"gap{suffix}")
    first_after = next(i for i, m in enumerate(frames) if m.timestamp - frames[0].timestamp >= 35.0)
    with pytest.raises(SourceError, match=r"gap\S* frame (\d+).*a gap of 5\.0\d\d s") as caught:
        canlog_source(path, DBC, mapping).check([1])
    frame = int(str(caught.value).split(" frame ")[1].split()[0].rstrip(":"))
    assert first_after + 1 <= frame <= first_after + 3  # the first frame after the gap of its message
    assert "signal '" in str(caught.value)


@pytest.mark.parametrize("suffix", [".log", ".asc", ".blf", ".trc", ".mf4"])
def test_a_timestamp_going_back_is_refused_naming_frame_line_and_signal(
    recorded: Recorded, mapping: Mapping, tmp_path: Path, suffix: str
) -> None:
    position = index_of(recorded.frames, SPEED_ID, 700)
    path = write_log(with_time_back(recorded.frames, position), tmp_path / f"back{suffix}")
    line = rf" \(line {position + 1}\)" if suffix == ".log" else r"( \(line \d+\))?"
    with pytest.raises(
        SourceError,
        match=rf"back{suffix} frame {position + 1}{line}: signal '(speed|acceleration)' "
        r".*timestamps must increase",
    ):
        canlog_source(path, DBC, mapping).check([1])


@pytest.mark.parametrize("suffix", [".log", ".blf", ".asc"])
def test_a_frame_too_short_for_its_dbc_message_is_refused_naming_it(
    recorded: Recorded, mapping: Mapping, tmp_path: Path, suffix: str
) -> None:
    position = index_of(recorded.frames, SPEED_ID, 100)
    path = write_log(with_short_frame(recorded.frames, position), tmp_path / f"short{suffix}")
    with pytest.raises(
        SourceError,
        match=rf"short{suffix} frame {position + 1}.*: message VehicleDynamics \(id 0x1A0\) has 2 data "
        r"bytes, its DBC definition 8",
    ):
        canlog_source(path, DBC, mapping).check([1])


def test_a_log_that_does_not_exist_is_refused(mapping: Mapping, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no recorded drive at .*nothere\.log"):
        canlog_source(tmp_path / "nothere.log", DBC, mapping)


def test_a_log_with_an_unknown_suffix_is_refused(
    recorded: Recorded, mapping: Mapping, tmp_path: Path
) -> None:
    path = tmp_path / "drive.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1")
    with pytest.raises(
        SourceError, match=r"drive\.pcap: not a CAN log python-can reads \(the suffix is one of \.log"
    ):
        canlog_source(path, DBC, mapping)


def test_a_log_python_can_cannot_parse_is_refused_naming_where(mapping: Mapping, tmp_path: Path) -> None:
    path = tmp_path / "junk.log"
    path.write_text("(1765000000.000000) can0 1A0#0000000000000000\nthis is not candump\n", encoding="utf-8")
    with pytest.raises(
        SourceError, match=r"junk\.log: python-can cannot read this \.log log after frame 1 \(line 1\)"
    ):
        canlog_source(path, DBC, mapping).check([1])
