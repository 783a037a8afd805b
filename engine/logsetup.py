"""The serving process's log: one line per record on stderr, `time level logger message`.

Every request writes an access line, so what a record costs counts. The format prints no
caller, thread or process, so logging is told not to collect them per record (the switches
the logging HOWTO names under "Optimization"), the time stamp's date and clock part is
formatted once a second instead of once a line, and the line is put together directly. The
lines are the same as with `logging.basicConfig(format=FORMAT)`.
"""

from __future__ import annotations

import logging
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class LineFormatter(logging.Formatter):
    """FORMAT's lines, with logging.Formatter's default asctime (`2026-12-06 02:37:45,123`,
    local time) whose part up to the second is kept while the second lasts."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        """FORMAT's line, put together directly rather than by %-formatting the record's
        dict; a record with a traceback or a stack goes through logging.Formatter, which
        appends them."""
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        return f"{record.asctime} {record.levelname} {record.name} {record.message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second, self._stamp = second, stamp
        return f"{self._stamp},{int(record.msecs):03d}"


def configure(level: str) -> None:
    """Log records at `level` and above to stderr (idempotent, as basicConfig is)."""
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no caller's file and line: the format prints neither
