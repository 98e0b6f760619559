"""Shared fixtures: a real local system (embedded Redis, cloud worker, client workers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from oodida_ops.local import LocalSystem
from oodida_user import Oodida

# Hypothesis profiles: "default" (what `make test` runs) and "thorough" (ten times as many
# examples; HYPOTHESIS_PROFILE=thorough). Tests that scale with the profile read
# settings.default.max_examples; the others set their own counts.
settings.register_profile("default", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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
