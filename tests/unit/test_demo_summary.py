"""The summary ``oodida demo`` ends with, built from results (no Redis, no workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oodida_core.protocol.wire import IterationResult
from oodida_user import Result
from oodida_user.demo import WIDTH, Where, code_per_iteration, summary

V1 = "sha256:" + "a" * 64
V2 = "sha256:" + "b" * 64


def it(index: int, clients: dict[int, str], **kw: Any) -> IterationResult:
    return IterationResult(
        index=index,
        value=1.0,
        onboard={c: 1.0 for c in clients},
        versions=clients | kw.pop("versions", {}),
        started_at=10.0 + index,
        finished_at=10.1 + index,
        **kw,
    )


def result(name: str, its: list[IterationResult], planned: int, status: str = "done") -> Result:
    return Result(
        id=name.lower(),
        status=status,
        spec={"name": name, "signals": "speed", "iterations": planned},
        clients=(1, 2, 3),
        iterations=its,
        created_at=9.0,
        started_at=10.0,
        finished_at=10.0 + len(its),
    )


def swap() -> Result:
    its = [it(i, {1: V1, 2: V1, 3: V1}) for i in range(3)]
    its.append(it(3, {1: V2, 2: V2}, versions={3: V1}, discarded={3: "minority"}))
    its.append(it(4, {1: V2, 2: V2}, missing=(3,)))
    return result("Swap", its, 6, status="cancelled")


WHERE = Where("redis://127.0.0.1:6400/0", Path("/tmp/demo-data"), False, 6400, None)


def test_code_per_iteration_merges_runs_of_the_same_version() -> None:
    assert code_per_iteration(swap()) == f"0-2 {V1[:19]}, 3-4 {V2[:19]}"
    assert code_per_iteration(result("One", [it(0, {1: "builtin"})], 1)) == "0 builtin"
    assert code_per_iteration(result("None", [], 1)) == "-"


def test_summary_counts_what_ran_what_was_left_out_and_says_where_data_and_flower_are() -> None:
    builtin = result("Listing 1.1", [it(0, {1: "builtin", 2: "builtin", 3: "builtin"})], 1)
    text = summary([builtin, swap()], 3, 12.34, WHERE)
    lines = text.splitlines()
    assert "2 assignments, 6 iterations on 3 simulated vehicles (clients 1-3)" in text
    row = next(line for line in lines if line.lstrip().startswith("Swap"))
    assert row.split()[:7] == ["Swap", "cancelled", "5/6", "13", "1", "1", "0"]
    assert f"0-2 {V1[:19]}, 3-4 {V2[:19]}" in text
    flat = " ".join(text.split())
    assert "redis://127.0.0.1:6400/0" in flat and "/tmp/demo-data: removed now" in flat
    assert "        or: oodida up --flower, then open http://127.0.0.1:5555/" in lines
    assert lines[-1] == "demo finished in 12.3s; every process it started is stopped"
    assert all(len(line) <= WIDTH for line in lines), "one screen wide"
    assert len(lines) <= 24, "one screen high"


def test_summary_with_kept_data_and_flower_running_gives_their_places() -> None:
    where = Where("redis://127.0.0.1:6400/0", Path("/srv/demo"), True, 6400, "http://127.0.0.1:5601/")
    text = " ".join(summary([swap()], 3, 1.0, where).split())
    assert "oodida up --data-dir /srv/demo --port 6400" in text
    assert "Flower: http://127.0.0.1:5601/ showed this run's tasks" in text
