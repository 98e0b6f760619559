"""Run a stored version of custom code: fetch its source once, then run it in the sandbox.

Sources are cached by version, never by name: a version is the hash of its source, so a
deployment (a new version) is seen by the very next call, and nothing stale can be served.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from oodida_core.customcode.check import CodePolicy
from oodida_core.customcode.sandbox import Sandbox
from oodida_core.protocol.errors import CustomCodeError
from oodida_core.state.codestore import CodeStore

_CACHE_SIZE = 256


class CodeRunner:
    def __init__(self, store: CodeStore, sandbox: Sandbox, policy: CodePolicy) -> None:
        self.store = store
        self.sandbox = sandbox
        self.policy = policy
        self._sources: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def source(self, version: str) -> tuple[str, str]:
        """(source, filename) of ``version``, from the cache or from Redis."""
        with self._lock:
            hit = self._sources.get(version)
            if hit is not None:
                self._sources.move_to_end(version)
                return hit
        found = self.store.source(version)
        if found is None:
            raise CustomCodeError(f"the code version {version} is not stored (expired or never deployed)")
        with self._lock:
            self._sources[version] = found
            while len(self._sources) > _CACHE_SIZE:
                self._sources.popitem(last=False)
        return found

    def run(self, version: str, x: object) -> object:
        source, filename = self.source(version)
        return self.sandbox.run((version, filename, source), x, self.policy)

    def close(self) -> None:
        self.sandbox.close()
