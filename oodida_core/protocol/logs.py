"""Log set-up shared by every OODIDA process.

Log lines quote what others wrote: spec names, file names, error messages of clients and of
custom code, task labels of messages anyone may have published. ``SafeFormatter`` shows every
control character, terminal escape and lone surrogate in a message as a visible escape
(``oodida_core.protocol.text``), so a record is one line that nobody else can forge or colour; only a
traceback keeps its line breaks.
"""

from __future__ import annotations

import logging
import sys

from oodida_core.protocol.text import printable

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class SafeFormatter(logging.Formatter):
    """A formatter whose records are printable: one line each, tracebacks excepted."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        return printable(super().formatException(ei), newlines=True)  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return printable(super().formatStack(stack_info), newlines=True)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
