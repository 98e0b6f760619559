"""The whole hostile catalogue through the real deploy path of a live system.

Each module of ``tests/unit/hostile_modules.py`` (with the escapes of ``hostile_escapes.py``)
is sent to the cloud as a deploy request that skips the library's own checks, as an attacker
would send it. The cloud checks it and dry-runs it in its jail; what it accepts is installed
on a client and run by an assignment. Every module fails to reach its goal: it is refused
(at deploy) or fails its task, with a message naming why (the catalogue's fragment), or, for
the modules meant to run, runs and is contained. The system serves a normal module after.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # the catalogue lives there
from hostile_modules import HOSTILE

from oodida_core.protocol.wire import TASK_DEPLOY, DeployRequest
from oodida_ops.local import LocalSystem
from oodida_user import CustomCodeError, Oodida
from oodida_user.deploy import Deployment

pytestmark = pytest.mark.slow

SPEC = {
    "name": "hostile",
    "mode": "measurement",
    "clients": [1],
    "signals": "speed",
    "onboard": "custom",
    "offboard": "collect",
    "frequency": 1,
    "samples": 3,
    "iterations": 1,
    "timeout": 30,
}


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oodida]:
    old = {k: os.environ.get(k) for k in ("OODIDA_CODE_TIME_LIMIT", "OODIDA_CODE_MEMORY_LIMIT")}
    os.environ["OODIDA_CODE_TIME_LIMIT"] = "2"
    os.environ["OODIDA_CODE_MEMORY_LIMIT"] = "256MiB"
    try:
        with (
            LocalSystem(1, data_dir=tmp_path_factory.mktemp("hostile"), processes=1) as system,
            Oodida(system.url, user="mallory", token=system.token("mallory")) as o,
        ):
            yield o
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def raw_deploy(o: Oodida, filename: str, source: str) -> Deployment:
    deploy_id = uuid.uuid4().hex
    request = DeployRequest(
        deploy_id=deploy_id,
        user=o.user,
        token=o.settings.token,
        request_id=f"{deploy_id}-request",
        role="onboard",
        filename=filename,
        source=source,
        clients=(1,),
    )
    o._send(TASK_DEPLOY, request, f"{deploy_id}-deploy")
    return Deployment(o, deploy_id, "", "onboard", filename, request.request_id)


@pytest.mark.parametrize(("name", "source", "fragment"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_hostile_module_sent_past_the_library_does_not_reach_its_goal(
    attacker: Oodida, name: str, source: str, fragment: str | None
) -> None:
    try:
        report = raw_deploy(attacker, "hostile.py", source).wait(timeout=120)
    except CustomCodeError as exc:
        if fragment is None:  # meant to run and be contained: a larger dry-run input may stop it
            assert "and was stopped" in str(exc), f"{name} was meant to run: {exc}"
            return
        assert fragment in str(exc) or "failed its dry run" in str(exc), str(exc)
        return
    if report.rejected:
        why = " ".join(report.rejected.values())
        assert fragment is not None and fragment in why, why
        return
    assert report.accepted == (1,), report
    iteration = attacker.submit(SPEC).wait(timeout=120).iterations[0]
    if fragment is None:
        assert iteration.failed == {} or all(len(e) < 2_000 for e in iteration.failed.values())
    else:
        assert 1 in iteration.failed, iteration
        assert fragment in iteration.failed[1], iteration.failed[1]
