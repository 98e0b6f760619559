"""How far an assignment got, and the progress bar ``wait()`` draws from it.

The bar (tqdm; ``tqdm.auto`` picks the notebook widget in Jupyter) counts finished iterations
and shows how many clients answered the current one. It is drawn on stderr when stderr is a
terminal, or in a notebook, and never otherwise (a pipe, a file, a CI log) or when the caller
passed ``progress=False``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class AssignmentProgress:
    """A snapshot of a running assignment, as ``Assignment.progress()`` reads it."""

    status: str
    iterations_done: int
    iterations: int | None  # the total; None for an assignment that runs until cancelled
    clients: int  # selected clients (0 until the cloud accepted the assignment)
    answered: int | None  # clients that answered the current iteration; None while it is stored

    def __str__(self) -> str:
        total = "?" if self.iterations is None else str(self.iterations)
        text = f"{self.status}: {self.iterations_done}/{total} iteration(s)"
        if self.status == "running" and self.answered is not None:
            text += f", {self.answered}/{self.clients} client(s) answered iteration {self.iterations_done}"
        return text


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
    """Whether to draw: asked for, and a notebook or a terminal on stderr (where tqdm draws)."""
    return enabled and (_in_notebook() or bool(getattr(sys.stderr, "isatty", lambda: False)()))


class ProgressBar:
    """Iterations done out of the total; the current iteration's answers as the postfix."""

    def __init__(self, total: int | None, *, enabled: bool, desc: str = "") -> None:
        self.bar: Any = None
        self.done = 0
        self._answered = -1
        if bar_wanted(enabled):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc[:40], unit="it", leave=True, dynamic_ncols=True)

    @property
    def active(self) -> bool:
        return self.bar is not None

    def iteration_done(self, answered: int | None = None, clients: int = 0) -> None:
        """One more iteration finished; ``answered`` of ``clients`` answered it in time."""
        self.done += 1
        self._answered = -1
        if self.bar is not None:
            if answered is not None and clients:
                text = f"iteration {self.done - 1}: {answered}/{clients} clients answered"
                self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)

    def answered(self, count: int | None, clients: int) -> None:
        """Show ``count`` of ``clients`` answers for the current iteration (never going down
        within an iteration: a completed chord's counter disappears before the event)."""
        if self.bar is None or count is None or count <= self._answered or not clients:
            return
        self._answered = count
        self.bar.set_postfix_str(f"iteration {self.done}: {count}/{clients} clients answered")

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.close()
