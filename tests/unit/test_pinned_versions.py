"""The Celery, kombu and redis-py releases whose internals the code relies on
(oodida_core/messaging/compat.py)."""

from __future__ import annotations

from pathlib import Path

from oodida_core.messaging import compat, kombu_guard
from oodida_core.messaging.compat import PINS, Internal, Pin

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_celery_kombu_and_redis_are_the_releases_whose_internals_were_checked() -> None:
    found = compat.problems()
    assert not found, "\n".join(found)


def test_another_release_series_fails_naming_the_version_checked_and_the_files_to_review() -> None:
    older = Pin(
        "celery", "4.4.7", (Internal("celery:Celery", "the app", ("oodida_core/messaging/celery_app.py",)),)
    )
    (message,) = compat.problems((older,))
    assert "this code relies on celery internals, checked with celery 4.4.7" in message
    assert "review oodida_core/messaging/celery_app.py before upgrading" in message


def test_an_internal_that_is_gone_or_changed_is_named_with_the_files_that_use_it() -> None:
    installed = compat.pin("kombu").checked
    guard = ("oodida_core/messaging/kombu_guard.py",)
    gone = Internal("kombu.transport.redis:Channel._no_such_method", "a guard", guard)
    prefix = "celery.backends.base:KeyValueStoreBackend.task_keyprefix"
    changed = Internal(prefix, "keys", ("x.py",), "other-")
    found = compat.problems((Pin("kombu", installed, (gone, changed)),))
    assert len(found) == 2
    assert found[0].startswith("kombu.transport.redis:Channel._no_such_method is gone")
    assert "review oodida_core/messaging/kombu_guard.py" in found[0]
    assert "'celery-task-meta-', not 'other-'" in found[1]


def test_every_file_the_pins_name_exists() -> None:
    named = {f for p in PINS for i in p.internals for f in i.where}
    assert not sorted(f for f in named if not (ROOT / f).is_file())


def test_the_transport_guard_accepts_the_kombu_series_pinned_here() -> None:
    assert compat.pin("kombu").series in kombu_guard.TESTED_KOMBU
