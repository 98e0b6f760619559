"""A/B experiments on a live simulated fleet (real Redis, cloud and edge workers): variants that
differ by a known amount are found to differ, identical ones are not, and the experiment can be
found again and recomputed from its stored assignments."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_ops.local import LocalSystem
from oodida_user import Oodida, SpecError
from oodida_user.groups import split_groups

CLIENTS = 10
DELTA = 150.0  # km/h: B's module adds it to the mean speed A computes
SPEC = {
    "name": "A/B",
    "mode": "measurement",
    "clients": "all",
    "signals": "speed",
    "onboard": "average",
    "offboard": "collect",
    "frequency": 10,
    "samples": 300,
    "iterations": 2,
}
MEAN = "def custom_code(x):\n    return sum(x) / len(x)\n"
MEAN_PLUS = f"def custom_code(x):\n    return sum(x) / len(x) + {DELTA}\n"


@pytest.fixture(scope="module")
def ab_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(CLIENTS, data_dir=tmp_path_factory.mktemp("experiment")) as s:
        yield s


@pytest.fixture()
def o(ab_system: LocalSystem) -> Iterator[Oodida]:
    with Oodida(ab_system.url, user="experimenter", token=ab_system.token("experimenter")) as o:
        yield o


@pytest.fixture()
def modules(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "mean.py").write_text(MEAN)
    (tmp_path / "mean_plus.py").write_text(MEAN_PLUS)
    return {"mean": tmp_path / "mean.py", "plus": tmp_path / "mean_plus.py"}


@pytest.mark.slow
def test_variants_that_differ_by_a_known_amount_are_found_to_differ(
    o: Oodida, modules: dict[str, Path]
) -> None:
    experiment = o.experiment(SPEC, {"A": modules["mean"], "B": modules["plus"]}, seed=11, confidence=0.999)
    result = experiment.wait(timeout=120)
    groups = result.groups
    assert not set(groups["A"]) & set(groups["B"]) and len(groups["A"]) == len(groups["B"]) == CLIENTS // 2
    overall = result.overall.comparisons[0]
    assert overall.pvalue is not None and overall.pvalue < 0.05 and overall.significant
    assert overall.low is not None and overall.high is not None
    assert overall.low <= DELTA <= overall.high  # a 99.9% interval holds the true difference
    for stage in result.iterations:
        p = stage.comparisons[0].pvalue
        assert p is not None and p < 0.05  # every iteration finds it too
    # every result carries its variant next to its version; the vote kept every one
    versions = {(r.variant, r.version) for r in result.rows}
    assert {v for _, v in versions if _ == "A"} == {experiment.versions["A"]}
    assert {v for _, v in versions if _ == "B"} == {experiment.versions["B"]}
    assert len(result.rows) == CLIENTS * SPEC["iterations"]
    assert all(not it.discarded for r in result.results.values() for it in r.iterations)
    # found again and recomputed from the stored assignments alone
    again = o.experiment_result(experiment.id, confidence=0.999)
    assert again.groups == groups and again.seed == 11
    assert again.overall.comparisons[0].pvalue == pytest.approx(overall.pvalue)


@pytest.mark.slow
def test_identical_variants_are_not_found_to_differ_over_repeated_seeds(
    o: Oodida, modules: dict[str, Path]
) -> None:
    """At 95% confidence a real difference is claimed for identical variants in about 1 run of
    20; in 8 runs, 4 or more such claims happen with probability below 0.0004."""
    spec = {**SPEC, "iterations": 1}
    found = []
    for seed in range(8):
        variants: dict[str, object] = {"A": "builtin", "B": "builtin"}
        if seed == 0:  # the same module deployed to both groups is identical too
            variants = {"A": modules["mean"], "B": modules["mean"]}
        result = o.experiment(spec, variants, seed=seed).wait(timeout=60)  # type: ignore[arg-type]
        c = result.overall.comparisons[0]
        assert c.pvalue is not None
        found.append(c.significant)
    assert sum(found) <= 3, found


def test_a_builtin_variant_against_custom_code_and_mann_whitney(o: Oodida, modules: dict[str, Path]) -> None:
    spec = {**SPEC, "iterations": 1, "clients": 6}
    result = o.experiment(
        spec, {"ctl": "builtin", "new": modules["plus"]}, split={"ctl": 0.5, "new": 0.5}, test="mannwhitney"
    ).wait(timeout=60)
    assert sum(len(g) for g in result.groups.values()) == 6
    assert {r.version for r in result.rows if r.variant == "ctl"} == {"builtin"}
    c = result.overall.comparisons[0]
    assert c.test == "mannwhitney" and c.difference is not None and c.difference > 100
    frame = result.to_frame()
    assert list(frame.columns) == ["variant", "client", "iteration", "version", "value", "metric", "error"]
    assert len(frame) == 6
    assert "overall" in str(result) and "Mann-Whitney U" in str(result)
    table = result.summary_frame()
    assert list(table["iteration"]) == [0, 0, "overall", "overall"]
    assert table["pvalue"].iloc[-1] == pytest.approx(c.pvalue)
    figure = result.plot()
    assert len(figure.axes) == 2
    png = io.BytesIO()
    figure.savefig(png, format="png")
    assert png.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_experiments_are_refused_before_anything_runs(o: Oodida, modules: dict[str, Path]) -> None:
    before = len(o.assignments())
    with pytest.raises(SpecError, match="builtin variant"):
        o.experiment({**SPEC, "onboard": "custom"}, {"A": "builtin", "B": modules["mean"]})
    with pytest.raises(SpecError, match="without a vehicle"):
        o.experiment({**SPEC, "clients": [1]}, {"A": "builtin", "B": "builtin"})
    with pytest.raises(SpecError, match="not live"):
        o.experiment({**SPEC, "clients": [1, 99]}, {"A": "builtin", "B": "builtin"})
    assert len(o.assignments()) == before


def test_the_command_line_runs_an_experiment_and_reads_it_again(
    ab_system: LocalSystem, modules: dict[str, Path], tmp_path: Path
) -> None:
    spec = {
        **SPEC,
        "iterations": 1,
        "experiment": {"variants": {"A": "builtin", "B": "mean_plus.py"}, "seed": 5},
    }
    path = modules["plus"].parent / "ab.json"
    path.write_text(json.dumps(spec))
    env = {
        **os.environ,
        "OODIDA_REDIS_URL": ab_system.url,
        "OODIDA_USER": "cli",
        "OODIDA_TOKEN": ab_system.token("cli"),
    }
    base = [sys.executable, "-m", "oodida_user._cli", "experiment"]
    run = subprocess.run([*base, str(path), "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["seed"] == 5 and [v["name"] for v in out["variants"]] == ["A", "B"]
    assert out["overall"]["comparisons"][0]["difference"] > 100
    again = subprocess.run([*base, "results", out["id"]], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert f"experiment {out['id']}" in again.stdout and "B - A (means)" in again.stdout
    flags = subprocess.run(
        [*base, str(tmp_path / "none.json"), "--variant", "A=builtin", "--variant", "B=builtin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert flags.returncode == 1 and "cannot read" in flags.stderr


@pytest.mark.slow
def test_a_vehicle_that_refuses_its_variant_is_left_out_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client 4 allows only ``math`` in custom code (its operator's OODIDA_CODE_ALLOWED_IMPORTS):
    it refuses variant B's module, which imports ``statistics``; the experiment runs B on the
    rest of B's group and says why 4 is not in it."""
    module_b = tmp_path / "median.py"
    module_b.write_text("import statistics\n\ndef custom_code(x):\n    return statistics.median(x)\n")
    seed = next(s for s in range(100) if 4 in split_groups([1, 2, 3, 4], ["A", "B"], seed=s)["B"])
    with LocalSystem(3, data_dir=tmp_path / "sys") as system:
        with monkeypatch.context() as env:
            env.setenv("OODIDA_CODE_ALLOWED_IMPORTS", "math")
            system.start_edge("strict-4", "4")
        system.wait_ready(clients=4, timeout=60)
        with Oodida(system.url, user="tester", token=system.token("tester")) as o:
            spec = {**SPEC, "iterations": 1}
            experiment = o.experiment(spec, {"A": "builtin", "B": module_b}, seed=seed)
            result = experiment.wait(timeout=60)
    assert list(result.excluded) == [4] and "refused variant B" in result.excluded[4]
    assert "statistics" in result.excluded[4]
    assert 4 not in result.groups["B"] and result.groups["B"]  # B ran on the rest of its group
    assert {r.client for r in result.rows} == {1, 2, 3}
    assert "left out: client 4 refused variant B" in str(result)
