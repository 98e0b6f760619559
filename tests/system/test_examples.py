"""Every script in examples/ runs to the end against a live system and says what it showed.

The scripts run as subprocesses (as a user would run them) against one shared local system;
one of them also runs standalone, starting and stopping a system of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_ops.local import LocalSystem

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CLIENTS = 6

# script -> lines (or parts of lines) its output must contain
EXPECTED: dict[str, list[str]] = {
    "custom_onboard": [f"custom on-board ran on {CLIENTS} vehicles: done"],
    "custom_offboard": [f"custom off-board combined {CLIENTS} vehicles: done", "speed  over 1200 readings"],
    "ab_test": [
        "groups: A on 3 vehicles, B on 3 vehicles, disjoint: yes",
        "overall: one value per vehicle, its metric averaged over the iterations",
        "B - A overall: ",
        "none discarded by the vote: yes",
        "found again from the stored assignments: yes",
        "A/B test done",
    ],
    "canary": [
        "voltage_calibrated.py: rolled_back; on vehicles now: none",
        "canary vehicles back at voltage_mean.py: yes",
        "never reached the others: yes",
        "voltage_mean_v2.py: promoted; every vehicle runs it: yes",
    ],
    "federated_custom": [
        "federated learning as custom code: done, 6 iterations; "
        "every vehicle started from the previous iteration's fleet model: yes"
    ],
    "replacement_mid_assignment": [
        "40 iterations, none lost or repeated: yes",
        "replaced mid-assignment: yes (done)",
        "a new assignment after the rollback runs on v1 mean_speed.py",
    ],
    "monitoring_threshold": ["monitoring done (done)"],
    "sampling": ["sampled 30 readings from 3 vehicles (done)"],
    "stream_batches": ["batch: 10 minutes of readings", "batch 5:", "stream cancelled after"],
    "mapreduce_count": [f"counted {3000 * CLIENTS} readings from {CLIENTS} vehicles (all; done)"],
    "federated_learning": [
        "fleet model of fuel_rate from speed, rpm: loss",
        f"federated learning done (done): 5 rounds on {CLIENTS} vehicles",
    ],
    "quorum": [
        "min_clients 4 of 6 vehicles",
        "every iteration closed with at least 4 answers, late ones kept out: yes (done)",
    ],
    "federated_strategies": [
        f"federated strategies: 8 of 8 runs done, 4 rounds each on {CLIENTS} vehicles",
        "fedadam carried its optimiser state through round 4",
    ],
    "fedbuff": [
        "asynchronous federated learning (done): 8 aggregations of at least 2 answers each;",
        "staleness recorded: yes",
    ],
    "tags": [
        "vehicle 5: powertrain=diesel, region=us",
        "electric vehicles: [1, 2, 3]",
        "on [1, 2, 3] (done)",
        "k=2 of the diesel or hybrid vehicles: 2 chosen",
        "speed_iqr.py deployed to the vehicles in region us: [5, 6]",
        "refused: no live client has the tags powertrain=hydrogen (live tags: powertrain: diesel (4-5), "
        "ev (1-3), hybrid (6); region: eu (1-4), us (5-6))",
    ],
    "results_analysis": [
        f"done, 6 iteration(s) on {CLIENTS} client(s)",
        f"to_frame(): {CLIENTS * 6 * 2} rows, columns ['client', 'iteration', 'signal', 'value', 'version']",
        "mean over the iterations, per vehicle:",
        "plot saved: ",
    ],
}


def run_example(name: str, *args: str, timeout: float = 120) -> str:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OODIDA_REDIS_URL", "OODIDA_USER", "OODIDA_TOKEN")
    }
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def examples_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    tags = ("region=eu", "1-3:powertrain=ev", "4-5:powertrain=diesel", "6:powertrain=hybrid", "5-6:region=us")
    with LocalSystem(CLIENTS, data_dir=tmp_path_factory.mktemp("examples"), tags=tags) as s:  # for tags.py
        yield s


def test_every_example_script_is_tested() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py")} - {"common"}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_example_runs_against_a_running_system(name: str, examples_system: LocalSystem) -> None:
    token = examples_system.token(f"examples-{name}")
    out = run_example(name, "--redis-url", examples_system.url, "--token", token)
    for line in EXPECTED[name]:
        assert line in out, f"{name}: {line!r} not in its output:\n{out}"
    for line in out.splitlines():
        if line.startswith("plot saved: "):  # results_analysis: a PNG a person can open
            png = Path(line.removeprefix("plot saved: "))
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
            png.unlink()


@pytest.mark.slow
def test_an_example_starts_and_stops_a_system_of_its_own() -> None:
    out = run_example("custom_onboard")
    assert f"(started a local system with {CLIENTS} simulated vehicles" in out
    assert f"custom on-board ran on {CLIENTS} vehicles: done" in out
