"""A local system with Flower, shared by the Flower and health tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from flower_kit import FlowerSystem

from oodida_ops.local import LocalSystem


@pytest.fixture(scope="session")
def flower_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowerSystem]:
    """Clients 1-3 served by one process, client 7 by a process of its own, a cloud worker,
    and Flower on a free port behind a basic-auth login."""
    login = f"operator:{secrets.token_urlsafe(12)}"
    system = LocalSystem(
        3, data_dir=tmp_path_factory.mktemp("flower"), flower=True, flower_port=0, flower_auth=login
    )
    with system:
        system.start_edge("client-7", "7")
        fs = FlowerSystem(system.flower_url, login, system)
        fs.wait_live(7)
        yield fs
