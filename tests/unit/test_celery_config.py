"""The Celery wiring every app shares: the operator's configuration module, the one router and
the message labels (oodida_core/messaging/celery_app.py, routing.py, tasklabels.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oodida_core.messaging.celery_app import CONFIG_MODULE_VAR, PROTECTED, make_celery_app
from oodida_core.messaging.routing import CLIENT_TASKS, CLOUD_TASKS, queue_for
from oodida_core.protocol.errors import BadArgument, MessageError
from oodida_core.protocol.keys import CLOUD_QUEUE
from oodida_core.protocol.wire import (
    TASK_FINISH_ITERATION,
    TASK_INSTALL,
    TASK_ONBOARD,
    TASK_START,
    TASK_VERSIONS,
)
from oodida_core.settings import Settings
from oodida_ops.redis_server import EmbeddedRedis

SETTINGS = Settings.from_env({}, redis_url="redis://127.0.0.1:1/0")  # never connected to


@pytest.fixture()
def operator_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """Where a test writes an operator's configuration module, and its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"ops_celeryconfig_{tmp_path.name.replace('-', '_')}"
    yield tmp_path / f"{name}.py", name


def test_the_operators_module_overrides_the_projects_configuration(
    operator_module: tuple[Path, str],
) -> None:
    path, name = operator_module
    path.write_text(
        "LIMIT = 3  # a constant of the module, not a setting\n"
        "broker_pool_limit = LIMIT\n"
        "worker_prefetch_multiplier = 4\n"
    )
    app = make_celery_app(SETTINGS, config_module=name)
    assert app.conf.broker_pool_limit == 3
    assert app.conf.worker_prefetch_multiplier == 4  # the project's is 1
    assert app.conf.accept_content == ["json"]  # the rest as the project sets it


def test_the_module_is_named_by_celerys_own_variable(
    operator_module: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, name = operator_module
    path.write_text("broker_pool_limit = 3\n")
    monkeypatch.setenv(CONFIG_MODULE_VAR, name)
    assert make_celery_app(SETTINGS).conf.broker_pool_limit == 3


def test_celerys_own_reading_of_the_module_cannot_change_a_protected_setting(
    operator_module: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery's loader reads $CELERY_CONFIG_MODULE by itself, old-style upper-case names too."""
    path, name = operator_module
    baseline = make_celery_app(SETTINGS).conf
    expected = {key: baseline[key] for key in PROTECTED}
    path.write_text("".join(f"{key} = 'pickle'\n" for key in PROTECTED) + "CELERY_RESULT_EXTENDED = True\n")
    monkeypatch.setenv(CONFIG_MODULE_VAR, name)
    conf = make_celery_app(SETTINGS, config_module="").conf  # the project's check skipped
    assert conf.broker_pool_limit == baseline.broker_pool_limit
    assert {key: conf[key] for key in PROTECTED} == expected


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("accept_content = ['json', 'pickle']", "accept_content"),
        ("task_serializer = 'pickle'", "task_serializer"),
        ("worker_consumer = 'celery.worker.consumer:Consumer'", "worker_consumer"),
        ("result_extended = True", "result_extended"),
        ("task_routes = {'oodida.edge.onboard': {'queue': 'cloud'}}", "task_routes"),
        ("broker_url = 'redis://elsewhere:6379/0'", "broker_url"),
        ("task_protocol = 1", "task_protocol"),  # v1 messages skip the labeller: tokens in events
    ],
)
def test_a_setting_the_security_model_depends_on_is_refused_naming_it(
    operator_module: tuple[Path, str], line: str, key: str
) -> None:
    path, name = operator_module
    path.write_text(f"broker_pool_limit = 3\n{line}\n")
    with pytest.raises(BadArgument) as refused:
        make_celery_app(SETTINGS, config_module=name)
    message = str(refused.value)
    assert message.startswith(f"{CONFIG_MODULE_VAR}={name}: may not set {key} (")
    assert PROTECTED[key] in message


def test_a_misspelt_setting_or_a_missing_module_is_refused(operator_module: tuple[Path, str]) -> None:
    path, name = operator_module
    path.write_text("broker_use_sll = {}\n")
    with pytest.raises(BadArgument, match="not Celery settings: broker_use_sll"):
        make_celery_app(SETTINGS, config_module=name)
    with pytest.raises(BadArgument, match="cannot import it: ModuleNotFoundError"):
        make_celery_app(SETTINGS, config_module="no_such_ops_module")


def test_every_protected_name_is_a_celery_setting() -> None:
    from celery.app.defaults import DEFAULTS

    assert not [key for key in PROTECTED if key not in DEFAULTS]


def onboard(client_id: object) -> dict[str, object]:
    return {"assignment_id": "a1", "user": "alice", "iteration": 2, "client_id": client_id, "token": "t0p"}


def test_each_task_goes_to_its_queue_by_name_and_a_clients_task_by_the_client_it_names() -> None:
    router = make_celery_app(SETTINGS).amqp.router
    for name in CLOUD_TASKS:
        assert router.route({}, name, ({},), {})["queue"].name == CLOUD_QUEUE
    for name in CLIENT_TASKS:
        assert router.route({}, name, (onboard(7),), {})["queue"].name == "client.7"
    assert router.route({}, "celery.backend_cleanup", (), {})["queue"].name == CLOUD_QUEUE  # the default


@pytest.mark.parametrize("client_id", [None, 0, -1, True, "3"])
def test_a_clients_task_naming_no_client_has_no_queue(client_id: object) -> None:
    with pytest.raises(MessageError, match="names no client"):
        queue_for(TASK_ONBOARD, (onboard(client_id),))
    with pytest.raises(MessageError, match="names no client"):
        queue_for(TASK_INSTALL, ())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("celery-config")) as srv:
        yield srv


def published(client: redis.Redis, queue: str) -> dict[str, object]:
    raw = client.rpop(queue)
    assert isinstance(raw, bytes), f"nothing on {queue}"
    item: dict[str, object] = json.loads(raw)
    return item


def test_a_message_sent_without_queue_or_labels_lands_on_its_queue_labelled(server: EmbeddedRedis) -> None:
    app = make_celery_app(Settings.from_env({}, redis_url=server.url, events=False))
    client = redis.Redis.from_url(server.url)
    app.send_task(TASK_ONBOARD, args=(onboard(3),), ignore_result=True)
    headers = published(client, "client.3")["headers"]
    assert isinstance(headers, dict)
    assert headers["argsrepr"] == "client=3 iteration=2 assignment=a1 user=alice"  # never the token
    assert headers["kwargsrepr"] == "{}"
    request = {"user": "alice", "token": "s3cret", "request_id": "r1", "clients": [1, 2]}
    app.send_task(TASK_VERSIONS, args=(request,), ignore_result=True)
    headers = published(client, CLOUD_QUEUE)["headers"]
    assert isinstance(headers, dict)
    assert headers["argsrepr"] == "user=alice clients=1,2"
    kwargs = {"assignment_id": "a1", "iteration": 4, "reason": "deadline"}
    app.send_task(TASK_FINISH_ITERATION, args=(None,), kwargs=kwargs, ignore_result=True)
    headers = published(client, CLOUD_QUEUE)["headers"]
    assert isinstance(headers, dict)
    assert headers["argsrepr"] == "iteration=4 assignment=a1 ended_by=deadline"
    app.send_task(TASK_START, args=({"user": "bob"},), argsrepr="given", ignore_result=True)
    headers = published(client, CLOUD_QUEUE)["headers"]
    assert isinstance(headers, dict)
    assert headers["argsrepr"] == "given"  # a publisher's own label wins


@pytest.mark.parametrize("setting", ["broker_use_ssl", "redis_backend_use_ssl"])
def test_tls_options_come_from_the_url_only(operator_module: tuple[Path, str], setting: str) -> None:
    """A module could turn verification off (found by a red team): TLS is the URL's, checked."""
    path, name = operator_module
    path.write_text(f"import ssl\n{setting} = {{'ssl_cert_reqs': ssl.CERT_NONE}}\n")
    with pytest.raises(BadArgument, match=setting):
        make_celery_app(SETTINGS, config_module=name)
