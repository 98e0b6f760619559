"""How far an assignment got, and the progress display ``wait()`` draws from it.

The display counts finished iterations out of the total and shows how many clients answered
the current one. In a terminal it is a tqdm bar on stderr; in Jupyter a tqdm notebook widget
(ipywidgets), or without ipywidgets one line of text and an HTML ``<progress>`` updated in
place through an IPython display handle. Nothing is drawn otherwise (stderr a pipe, a file, a
CI log) or when the caller passed ``progress=False``.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable
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


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def progress_text(desc: str, done: int, total: int | None, elapsed: float, postfix: str = "") -> str:
    """One line: ``desc: 2/5 iteration(s) [3.1s], iteration 2: 4/6 clients answered``."""
    of = "?" if total is None else str(total)
    text = f"{desc + ': ' if desc else ''}{done}/{of} iteration(s) [{elapsed:.1f}s]"
    return f"{text}, {postfix}" if postfix else text


class TextProgress:
    """The notebook display without ipywidgets: text and an HTML ``<progress>``, one display
    updated in place (tqdm's ``update``, ``set_postfix_str`` and ``close``). ``show`` is
    IPython's ``display`` unless given."""

    def __init__(self, total: int | None, desc: str = "", show: Callable[..., Any] | None = None) -> None:
        if show is None:
            from IPython.display import display

            show = display
        self.total, self.desc, self.n, self.postfix = total, desc, 0, ""
        self._started = time.monotonic()
        self._handle = show(self.bundle(), raw=True, display_id=True)

    def bundle(self) -> dict[str, str]:
        text = progress_text(self.desc, self.n, self.total, time.monotonic() - self._started, self.postfix)
        bar = f"<progress value='{self.n}' max='{self.total}'></progress> " if self.total else ""
        page = f"<div class='oodida-progress'>{bar}{html.escape(text)}</div>"
        return {"text/plain": text, "text/html": page}

    def _refresh(self) -> None:
        if self._handle is not None:
            self._handle.update(self.bundle(), raw=True)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text
        if refresh:
            self._refresh()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._refresh()

    def close(self) -> None:
        self._refresh()


def make_display(total: int | None, desc: str, notebook: bool, widgets: bool) -> Any:
    """The display for where we run: tqdm's widget in a notebook with ipywidgets, the text
    display in one without (or when the widget cannot be built), tqdm's bar elsewhere."""
    if notebook:
        if widgets:
            try:
                from tqdm.notebook import tqdm as notebook_tqdm

                return notebook_tqdm(total=total, desc=desc, unit="it", leave=True)
            except ImportError:  # ipywidgets too old for tqdm, or no frontend support
                pass
        return TextProgress(total, desc)
    from tqdm.std import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=True, dynamic_ncols=True)


class ProgressBar:
    """Iterations done out of the total; the current iteration's answers as the postfix."""

    def __init__(self, total: int | None, *, enabled: bool, desc: str = "") -> None:
        self.bar: Any = None
        self.done = 0
        self._answered = -1
        if bar_wanted(enabled):
            notebook = _in_notebook()
            self.bar = make_display(total, desc[:40], notebook, notebook and _widgets_available())

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
