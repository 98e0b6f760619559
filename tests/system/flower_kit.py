"""Talking to a live Flower from the tests: its HTTP API with the login, and polling."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from oodida_core.state.registry import Registry
from oodida_ops.local import LocalSystem


@dataclass
class FlowerSystem:
    url: str  # http://127.0.0.1:<port>/
    login: str  # user:password
    system: LocalSystem | None = None

    def get(self, path: str, auth: bool = True, timeout: float = 30) -> bytes:
        headers = {"Authorization": "Basic " + base64.b64encode(self.login.encode()).decode()} if auth else {}
        request = urllib.request.Request(self.url.rstrip("/") + path, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(0.5)
        pytest.fail(f"Flower did not show {what} within {timeout}s (last: {last!r})")

    def wait_live(self, client_id: int, live: bool = True, timeout: float = 60.0) -> None:
        assert self.system is not None
        client = redis.Redis.from_url(self.system.url)
        registry = Registry(client, self.system.settings)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if (client_id in {c.client_id for c in registry.live()}) == live:
                    return
                time.sleep(0.1)
        finally:
            client.close()
        pytest.fail(f"client {client_id} did not become {'live' if live else 'not live'} in {timeout}s")
