"""Vehicles chosen by tags, on a live fleet: real Redis, real edge workers with tags of their
own, the cloud choosing by them for assignments and deployments, `oodida clients` showing them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.keys import Keys
from oodida_core.protocol.tags import TagFilter
from oodida_core.spec.model import LISTING_1_1
from oodida_ops.local import LocalSystem
from oodida_user import Oodida, SpecError

ROOT = Path(__file__).resolve().parents[2]
OODIDA = str(Path(sys.executable).with_name("oodida"))
MODULE = ROOT / "examples" / "modules" / "speed_iqr.py"
# clients 1-6 in one edge process; client 9 in one of its own, tagged through OODIDA_TAGS
FLEET_TAGS = (
    "region=eu",
    "1-3:powertrain=ev",
    "4-5:powertrain=diesel",
    "6:powertrain=hybrid",
    "5-6:region=us",
)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(6, tags=FLEET_TAGS, data_dir=tmp_path_factory.mktemp("tags")) as system:
        os.environ["OODIDA_TAGS"] = "powertrain=ev, region=cn"
        try:
            system.start_edge("vehicle-9", "9", tags=["model=xc40"])
        finally:
            del os.environ["OODIDA_TAGS"]
        # two processes, each told every item: a child applies those of its own clients
        system.start_edge("pair", "20-21", processes=2, tags=["20:fleet=test-a", "21:fleet=test-b"])
        system.wait_ready(6)
        deadline = time.monotonic() + 60
        with Oodida(system.url, user="tags", token=system.token("tags")) as o:
            while not {9, 20, 21} <= {c.client_id for c in o.clients()}:
                assert time.monotonic() < deadline, "clients 9, 20 and 21 did not come up"
                time.sleep(0.2)
        yield system


@pytest.fixture()
def o(tagged: LocalSystem) -> Iterator[Oodida]:
    with Oodida(tagged.url, user="tags", token=tagged.token("tags")) as conn:
        yield conn


def spec(clients: object) -> dict[str, object]:
    return {**LISTING_1_1, "clients": clients, "samples": 50}


def test_each_vehicle_advertises_the_tags_the_operator_gave_it(o: Oodida) -> None:
    tags = {c.client_id: c.tags for c in o.clients()}
    assert tags[1] == {"region": "eu", "powertrain": "ev"}
    assert tags[5] == {"region": "us", "powertrain": "diesel"}
    assert tags[6] == {"region": "us", "powertrain": "hybrid"}
    assert tags[9] == {"powertrain": "ev", "region": "cn", "model": "xc40"}  # $OODIDA_TAGS, then --tag
    assert (tags[20], tags[21]) == ({"fleet": "test-a"}, {"fleet": "test-b"})  # --processes 2
    assert [c.client_id for c in o.clients(tags={"powertrain": "ev", "region": ["eu", "cn"]})] == [1, 2, 3, 9]


def test_an_assignment_for_a_tag_runs_exactly_on_the_matching_vehicles(o: Oodida) -> None:
    result = o.submit(spec({"tags": {"powertrain": "ev"}})).wait(timeout=60, progress=False)
    assert result.status == "done"
    assert sorted(result.clients) == [1, 2, 3, 9]
    assert sorted(result.iterations[0].onboard) == [1, 2, 3, 9]
    both = o.submit(spec({"tags": {"powertrain": ["ev", "diesel"], "region": "eu"}})).wait(timeout=60)
    assert sorted(both.iterations[0].onboard) == [1, 2, 3, 4]


def test_k_runs_on_k_of_the_matching_vehicles(o: Oodida) -> None:
    seen: set[int] = set()
    for _ in range(4):
        result = o.submit(spec({"tags": {"powertrain": ["ev", "diesel"]}, "k": 2})).wait(timeout=60)
        chosen = sorted(result.iterations[0].onboard)
        assert len(chosen) == 2 and set(chosen) <= {1, 2, 3, 4, 5, 9}
        seen |= set(chosen)
    assert len(seen) > 2  # a fresh random pick per assignment


def test_a_filter_no_live_vehicle_matches_is_refused_naming_the_live_tags(o: Oodida) -> None:
    with pytest.raises(SpecError) as exc:
        o.submit(spec({"tags": {"powertrain": "hydrogen"}})).wait(timeout=30)
    message = str(exc.value)
    assert "no live client has the tags powertrain=hydrogen" in message
    assert "powertrain: diesel (4-5), ev (1-3,9), hybrid (6)" in message
    with pytest.raises(SpecError, match="no live client has the tags powertrain=hydrogen"):
        o.deploy_onboard(MODULE, clients={"tags": {"powertrain": "hydrogen"}})


def test_a_deployment_by_tags_reaches_exactly_the_matching_vehicles(o: Oodida) -> None:
    report = o.deploy_onboard(MODULE, clients={"tags": {"region": "us"}}).wait(timeout=60)
    assert sorted(report.accepted) == [5, 6] and not report.rejected
    picked = o.submit(
        {"mode": "deploy_onboard", "filename": str(MODULE), "clients": {"tags": {"model": "xc40"}}}
    )
    assert sorted(picked.wait(timeout=60).accepted) == [9]


def test_the_cloud_refuses_a_deployment_whose_filter_matches_no_live_vehicle(o: Oodida) -> None:
    # past the library's own check: the request as a client in another language could send it
    deployment = o._deploy("onboard", MODULE, TagFilter(tags={"region": ("mars",)}))
    with pytest.raises(OodidaError, match="no live client has the tags region=mars"):
        deployment.wait(timeout=30)


def test_a_rogue_entry_with_odd_tags_is_not_a_live_vehicle(tagged: LocalSystem, o: Oodida) -> None:
    keys = Keys(tagged.settings.key_prefix)
    client = redis.Redis.from_url(tagged.url)
    entry = json.loads(client.get(keys.client_info(1)) or b"{}")
    entry.update(client_id=77, tags={"p\u043ewertrain": "ev"})  # a Cyrillic o: a lookalike key
    try:
        client.set(keys.client_info(77), json.dumps(entry))
        client.set(keys.client_seen(77), repr(time.time()), px=60_000)
        client.sadd(keys.client_index, "77")
        assert 77 not in {c.client_id for c in o.clients()}
        result = o.submit(spec({"tags": {"powertrain": "ev"}})).wait(timeout=60)
        assert 77 not in result.iterations[0].onboard
    finally:
        client.delete(keys.client_info(77), keys.client_seen(77))
        client.close()


def run(system: LocalSystem, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OODIDA_REDIS_URL": system.url,
        "OODIDA_USER": "tags",
        "OODIDA_TOKEN": system.token("tags"),
    }
    return subprocess.run([OODIDA, *args], env=env, capture_output=True, text=True, timeout=60)


def test_oodida_clients_shows_the_tags_and_filters_by_them(tagged: LocalSystem) -> None:
    out = run(tagged, "clients")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "9 live client(s)" and "TAGS" in lines[1].split()
    rows = {int(line.split()[0]): line.split() for line in lines[2:]}
    assert rows[5][-2] == "powertrain=diesel,region=us"
    assert rows[9][-2] == "model=xc40,powertrain=ev,region=cn"
    only = run(tagged, "clients", "--tag", "powertrain=ev", "--tag", "region=eu", "--tag", "region=cn")
    assert only.stdout.splitlines()[0] == "4 live client(s) with the tags powertrain=ev, region=eu|cn"
    assert [int(line.split()[0]) for line in only.stdout.splitlines()[2:]] == [1, 2, 3, 9]
    listed = json.loads(run(tagged, "clients", "--json", "--tag", "powertrain=hybrid").stdout)
    assert [(c["client_id"], c["tags"]) for c in listed] == [(6, {"region": "us", "powertrain": "hybrid"})]
    bad = run(tagged, "clients", "--tag", "region")
    assert bad.returncode != 0 and "must be [IDS:]key=value" in bad.stderr


def test_oodida_deploy_onboard_chooses_clients_by_tags(tagged: LocalSystem) -> None:
    out = run(tagged, "deploy", "onboard", str(MODULE), "--tag", "powertrain=ev", "--clients", "k=2")
    assert out.returncode == 0, out.stderr
    assert "accepted by 2 client(s)" in out.stdout, out.stdout
    (listed,) = [line for line in out.stdout.splitlines() if line.strip().startswith("accepted:")]
    assert set(json.loads(listed.split(":", 1)[1])) <= {1, 2, 3, 9}
    none = run(tagged, "deploy", "onboard", str(MODULE), "--tag", "region=mars")
    assert none.returncode != 0 and "no live client has the tags region=mars" in none.stderr
    ids = run(tagged, "deploy", "onboard", str(MODULE), "--tag", "region=eu", "--clients", "1-2")
    assert ids.returncode != 0 and "not ids" in ids.stderr


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--tag", "p\u043ewertrain=ev"], "U+043E at position 2"),
        (["--tag", "8-9:region=eu"], "none of which are served here"),
        (["--tag", "region=" + "x" * 200], "1 to 128 characters"),
    ],
)
def test_the_edge_refuses_bad_tags_at_start(option: list[str], says: str) -> None:
    cmd = [sys.executable, "-m", "oodida_edge", "--clients", "1-2", *option, "--check"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr


def test_the_edge_refuses_bad_tags_in_its_environment() -> None:
    env = {**os.environ, "OODIDA_TAGS": "powertrain=ev,region"}
    cmd = [sys.executable, "-m", "oodida_edge", "--clients", "1-2", "--check"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 2 and "$OODIDA_TAGS" in proc.stderr and "'region'" in proc.stderr
