"""What Flower shows of each task (its argument labels) and how oodida-flower starts Flower;
the health check's parts that need no Redis."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from oodida_core.messaging.labels import LABEL_FIELDS, MAX_LABEL, args_label, finish_labels
from oodida_core.protocol.wire import (
    TASK_AUTHENTICATE,
    TASK_CANCEL,
    TASK_DEPLOY,
    TASK_INSTALL,
    TASK_ONBOARD,
    TASK_PURGE,
    TASK_ROLLBACK,
    TASK_START,
    TASK_VERSIONS,
    AuthRequest,
    CancelRequest,
    DeployRequest,
    InstallTask,
    OnboardTask,
    PurgeRequest,
    RollbackRequest,
    SubmitRequest,
    VersionsRequest,
)
from oodida_core.settings import Settings
from oodida_ops.flower import flower_argv
from oodida_ops.health import check_health
from oodida_ops.redis_server import free_port

MODELS: dict[str, type[BaseModel]] = {
    TASK_START: SubmitRequest,
    TASK_CANCEL: CancelRequest,
    TASK_DEPLOY: DeployRequest,
    TASK_ONBOARD: OnboardTask,
    TASK_INSTALL: InstallTask,
    TASK_AUTHENTICATE: AuthRequest,
    TASK_ROLLBACK: RollbackRequest,
    TASK_VERSIONS: VersionsRequest,
    TASK_PURGE: PurgeRequest,
}


def _onboard(**changes: object) -> OnboardTask:
    fields: dict[str, object] = {
        "assignment_id": "1be9d267fee3458a",
        "user": "alice",
        "iteration": 4,
        "client_id": 17,
        "method": "average",
        "signals": ("speed",),
        "samples": 100,
        "frequency": 10,
        "model": {str(c): {"speed": float(c)} for c in range(1000)},
        "deadline": 1.0,
    }
    return OnboardTask.model_validate({**fields, **changes})


def test_every_message_task_has_a_label_and_every_labelled_field_exists_in_its_message() -> None:
    assert set(LABEL_FIELDS) == set(MODELS)
    for task, fields in LABEL_FIELDS.items():
        for _, path in fields:
            assert path.split(".")[0] in MODELS[task].model_fields, (task, path)


def test_an_onboard_label_names_client_iteration_assignment_and_user_but_not_the_model() -> None:
    label = args_label(TASK_ONBOARD, _onboard().to_wire())
    assert (
        label == "client=17 iteration=4 assignment=1be9d267fee3458a user=alice method=average signals=speed"
    )


def test_a_label_quotes_what_could_pass_for_another_field() -> None:
    # The wire refuses such a user name; a forged message may carry one all the same.
    label = args_label(TASK_ONBOARD, {**_onboard().to_wire(), "user": "mallory client=3"})
    assert label.startswith("client=17 ")
    assert "user='mallory client=3'" in label


def test_labels_are_bounded_and_never_raise_on_odd_messages() -> None:
    assert len(args_label(TASK_ONBOARD, {**_onboard().to_wire(), "user": "u" * 5000})) <= MAX_LABEL
    assert args_label(TASK_START, {"assignment_id": "a", "spec": "not a dict"}) == "assignment=a"
    assert args_label(TASK_START, None) == "None"
    assert args_label("some.other.task", {"x": [1, 2]}) == "x=1,2"
    spec = {"name": "Average speed", "mode": "measurement", "clients": [1, 2, 3], "iterations": 2}
    start = SubmitRequest(assignment_id="abc", user="bob", spec=spec).to_wire()
    assert args_label(TASK_START, start) == (
        "assignment=abc user=bob name='Average speed' mode=measurement clients=1,2,3 iterations=2"
    )


def test_an_offboard_step_is_labelled_with_its_assignment_iteration_and_user() -> None:
    args, kwargs = finish_labels("abc", 3, "alice", clients=250)
    assert args == "iteration=3 assignment=abc user=alice answers=250"
    assert kwargs == "{'assignment_id': 'abc', 'iteration': 3}"
    args, kwargs = finish_labels("abc", 3, "alice", reason="deadline")
    assert args == "iteration=3 assignment=abc user=alice ended_by=deadline"
    assert kwargs == "{'assignment_id': 'abc', 'iteration': 3, 'reason': 'deadline'}"


def test_oodida_flower_binds_locally_and_shows_the_labels_unless_told_otherwise() -> None:
    argv = flower_argv(["--port=5555"], {})
    assert argv[0] == "flower" and argv[-1] == "--port=5555"
    assert "--address=127.0.0.1" in argv
    assert any(a.startswith("--tasks_columns=") and ",args," in a for a in argv)
    assert "--address=127.0.0.1" not in flower_argv(["--address=0.0.0.0"], {})
    assert "--address=127.0.0.1" not in flower_argv([], {"FLOWER_ADDRESS": "0.0.0.0"})
    assert not any(a.startswith("--tasks_columns=") for a in flower_argv(["--tasks-columns=name"], {})[:-1])


@pytest.mark.parametrize("path", ["", "/"])
def test_health_reports_a_flower_that_does_not_answer(path: str) -> None:
    url = f"http://127.0.0.1:{free_port()}{path}"
    health = check_health(Settings(), flower_url=url)
    assert not health.healthy
    assert health.problems[0].startswith(f"Flower at {url.rstrip('/')}/healthcheck: ")


def test_health_reports_an_unreachable_redis() -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    health = check_health(settings, clients=[1])
    assert not health.healthy and health.problems[0].startswith("Redis:")
    assert "unhealthy: Redis:" in health.report()
