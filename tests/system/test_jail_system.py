"""The jail on a live system: two users' modules on the same vehicles, through the real deploy
path. Whatever one user's code leaves in the interpreter (random and numpy seeds, decimal's
context, a module attribute), the next call, another user's, starts from a fresh process."""

from __future__ import annotations

import random
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from oodida_ops.local import LocalSystem
from oodida_user import Oodida

POISON = """
import random
import decimal
import numpy as np

def custom_code(x):
    random.seed(42)
    np.random.seed(42)
    decimal.setcontext(decimal.Context(prec=3))
    return [random.random(), float(np.random.random())]
"""
PROBE = """
import random
import decimal
import numpy as np

def custom_code(x):
    return [random.random(), float(np.random.random()), str(decimal.Decimal(1) / decimal.Decimal(7))]
"""
SPEC = {
    "name": "jail",
    "mode": "measurement",
    "clients": [1, 2],
    "signals": "speed",
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 1,
    "samples": 10,
    "iterations": 1,
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    with LocalSystem(2, data_dir=tmp_path_factory.mktemp("jail"), processes=1) as s:
        yield s


def deploy(o: Oodida, tmp_path: Path, name: str, source: str) -> None:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    report = o.deploy_onboard(path, clients=[1, 2]).wait(timeout=60)
    assert report.accepted == (1, 2), report


def test_what_one_users_code_leaves_behind_is_gone_in_the_next_users_call(
    system: LocalSystem, tmp_path: Path
) -> None:
    with (
        Oodida(system.url, user="mallory", token=system.token("mallory")) as mallory,
        Oodida(system.url, user="alice", token=system.token("alice")) as alice,
    ):
        deploy(mallory, tmp_path, "poison.py", POISON)
        deploy(alice, tmp_path, "probe.py", PROBE)
        seeded = random.Random(42)
        seeded_np = np.random.RandomState(42)
        stream = [seeded.random() for _ in range(3)]
        stream_np = [float(v) for v in seeded_np.random_sample(3)]
        for _ in range(2):  # mallory's call, then alice's, on the same two vehicles (one process)
            poisoned = mallory.submit(SPEC).wait(timeout=60).iterations[0].onboard
            assert set(poisoned) == {1, 2}
            assert all(v == [stream[0], stream_np[0]] for v in poisoned.values())
            probed = alice.submit(SPEC).wait(timeout=60).iterations[0].onboard
            assert set(probed) == {1, 2}
            for r, r_np, seventh in probed.values():
                assert r not in stream and r_np not in stream_np  # not mallory's seed
                assert seventh == "0.1428571428571428571428571429"  # 28 digits, not 3
            assert probed[1][:2] != probed[2][:2]  # and every call draws afresh
