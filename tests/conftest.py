"""Shared fixtures: a real local system (embedded Redis, cloud worker, client workers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oodida_core.local import LocalSystem
from oodida_user import Oodida


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """Five simulated clients served by one process, one cloud worker, an embedded Redis."""
    with LocalSystem(5, data_dir=tmp_path_factory.mktemp("system")) as s:
        yield s


@pytest.fixture()
def oodida(system: LocalSystem) -> Iterator[Oodida]:
    with Oodida(system.url, user="tester", token=system.token("tester")) as o:
        yield o


@pytest.fixture()
def fresh_system(tmp_path: Path) -> Iterator[LocalSystem]:
    """A system of its own, for tests that kill or add processes."""
    with LocalSystem(3, data_dir=tmp_path / "fresh") as s:
        yield s
