"""How the command line waits for an assignment: its result and exit code, and Ctrl-C."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from oodida_core.protocol.errors import OodidaError, QuotaError
from oodida_core.protocol.text import printable

from .assignment import Assignment, AssignmentInterrupted
from .results import Result

EXIT_FAILED = 4  # the assignment ended failed
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
CANCEL_S = 30.0  # --cancel-on-interrupt waits at most this long for the cancel
EXIT_CODES = """exit codes:
  0    done; also an assignment cancelled (the summary says so) or still running (--no-wait)
  1    an error: the broker, a refused request, a time-out, an unhealthy system (health)
  2    a bad assignment spec
  3    a deployment that some clients rejected
  4    the assignment ended failed (submit, results): the summary lists every failure
  5    a canary deployment rolled back (deploy onboard --canary): the report says why
  130  interrupted (Ctrl-C); the assignment goes on unless --cancel-on-interrupt"""


def read_spec_file(path: str) -> Any:
    """The JSON an assignment spec file holds; OodidaError saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise OodidaError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise OodidaError(f"{path} is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise OodidaError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except RecursionError:
        raise OodidaError(f"{path} is nested too deeply to be an assignment spec") from None


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))  # ASCII: every control character escaped


def say(text: object, file: Any = None) -> None:
    """Print text that may hold what others wrote (names, error messages of clients and custom
    code): control characters and terminal escapes are shown as escapes, never obeyed."""
    print(printable(str(text), newlines=True), file=file)


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A library warning (an endless stream, ...) as one line, not a source location."""
    say(f"oodida: warning: {message}", file=sys.stderr)


def waited(a: Assignment, args: argparse.Namespace) -> int:
    """Wait for ``a`` and show its result; the exit code its status calls for."""
    try:
        result = a.wait(timeout=args.timeout, progress=True)
    except QuotaError as exc:  # a limit ended it: failed
        say(f"oodida: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return shown(result, args.json)


def shown(result: Result, as_json: bool) -> int:
    print_json(result.to_dict()) if as_json else say(result.summary())
    return EXIT_FAILED if result.status == "failed" else 0


def cancel_after_interrupt(a: Assignment) -> int:
    """--cancel-on-interrupt: cancel ``a``, waiting at most CANCEL_S; Ctrl-C again stops that."""
    print(
        f"oodida: interrupted; cancelling assignment {a.id} (at most {CANCEL_S:.0f}s; "
        "Ctrl-C again stops waiting)",
        file=sys.stderr,
        flush=True,
    )
    a.o.accept_timeout = min(a.o.accept_timeout, CANCEL_S / 2)  # the cancel request's reply
    try:
        result = a.cancel(timeout=CANCEL_S / 2)  # then the end of the assignment
    except KeyboardInterrupt:
        print(
            f"oodida: interrupted again; the cancel of assignment {a.id} may not have completed; "
            f"check with: oodida status {a.id}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except OodidaError as exc:
        say(f"oodida: the cancel of assignment {a.id} may not have completed: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(
        f"oodida: assignment {a.id} {result.status} after {len(result.iterations)} iteration(s)",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED


def interrupted_line(exc: AssignmentInterrupted) -> str:
    """The command line's one line after Ctrl-C: whether the assignment still runs, and the
    command that stops it."""
    aid = exc.assignment_id
    if exc.ended:
        return f"oodida: interrupted; assignment {aid} has ended ({exc.status}); see: oodida results {aid}"
    if exc.cancelling:
        return (
            f"oodida: interrupted; the cancel of assignment {aid} may not have completed; "
            f"check with: oodida status {aid}"
        )
    if exc.status is None:
        state = "may still be running (its status could not be read)"
    else:
        state = "is still queued" if exc.status == "pending" else "is still running"
    return f"oodida: interrupted; assignment {aid} {state}; stop it with: oodida cancel {aid}"
