"""A progress bar over iterations: tqdm on a terminal or in a notebook, nothing otherwise."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def bar_wanted(enabled: bool) -> bool:
    return enabled and (_in_notebook() or bool(getattr(sys.stderr, "isatty", lambda: False)()))


class Progress:
    def __init__(self, total: int | None, *, enabled: bool, desc: str = "") -> None:
        self.bar: Any = None
        if bar_wanted(enabled):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc[:40], unit="it", leave=True)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.close()
