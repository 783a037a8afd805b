"""The serving process's log: one line per record on stderr, `time level logger message`.

Every request writes an access line, so what a record costs counts. The format prints no
caller, thread or process, so logging is told not to collect them per record (the switches
the logging HOWTO names under "Optimization"), the time stamp's date and clock part is
formatted once a second instead of once a line, and the line is put together directly. The
lines are the same as with `logging.basicConfig(format=FORMAT)`.

Lines logged on the event loop at INFO and below are written together, at most FLUSH_DELAY
after the first of them (BatchedLines): with one request at a time, a write() per access line
cost about 12-26 µs of CPU a request in bench/ (making and formatting the line about as much).
The access line skips the LogRecord when this handler is the only one to see it
(engine/logline.py: `emit_info`, `LineFormatter.line`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import time
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FLUSH_DELAY = 0.1  # seconds a line logged on the event loop may wait for its write
MAX_PENDING = 256  # lines held at most; more are written at once
# Writes of at most PIPE_BUF bytes to a pipe are never interleaved with another process's
# (the workers of `serve --workers N` share stderr), so a write carries whole lines up to it.
PIPE_BUF = select.PIPE_BUF
MSECS = tuple(f"{ms:03d}" for ms in range(1000))  # a stamp's milliseconds, formatted once


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

    def line(self, created: float, levelname: str, name: str, message: str, end: str = "") -> str:
        """The line format() makes of a record with these fields and no traceback (msecs
        derived from `created` as LogRecord does), for a caller that makes no record;
        `end` appended (a handler's terminator: one string made, not two)."""
        second = int(created)
        stamp = self._stamp if second == self._second else self._new_second(second)
        return f"{stamp},{MSECS[int((created - second) * 1000)]} {levelname} {name} {message}{end}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self._time(record.created, int(record.msecs))

    def _time(self, created: float, msecs: int) -> str:
        second = int(created)
        stamp = self._stamp if second == self._second else self._new_second(second)
        return f"{stamp},{MSECS[msecs]}"

    def _new_second(self, second: int) -> str:
        """The date and clock part of the stamps of `second`, kept while it lasts."""
        self._stamp = time.strftime(self.default_time_format, self.converter(second))
        self._second = second
        return self._stamp


class BatchedLines(logging.StreamHandler[TextIO]):
    """A StreamHandler that holds the lines logged on a running event loop at INFO and below
    and writes them together when FLUSH_DELAY has passed (a timer on that loop), or when
    MAX_PENDING are held. A WARNING or worse, or a line logged where no loop runs, is written
    at once with everything held before it, so the order stays. `flush()` (logging.shutdown
    at exit, before a fork, a worker's end) writes what is held: a stop with SIGTERM loses
    nothing; only a process killed outright loses up to FLUSH_DELAY of INFO lines."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # has a flush due

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._hold(self.format(record) + self.terminator, record.levelno)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def emit_info(self, formatter: LineFormatter, name: str, message: str) -> None:
        """What handle() of an INFO record from logger `name` with this message does (this
        handler's lock, emit, handleError) when `formatter` is this handler's and no filter
        is set, without the record (see engine/logline.py)."""
        lock = self.lock  # what acquire() and release() take, without their two calls
        assert lock is not None  # (a StreamHandler's, made in its __init__)
        with lock:
            try:
                line = formatter.line(time.time(), "INFO", name, message, self.terminator)
                self._hold(line, logging.INFO)
            except RecursionError:
                raise
            except Exception:
                record = logging.LogRecord(name, logging.INFO, "", 0, message, None, None)
                self.handleError(record)

    def _hold(self, line: str, levelno: int) -> None:
        self._pending.append(line)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or levelno > logging.INFO or len(self._pending) >= MAX_PENDING:
            self._write_pending()
        elif self._timer_loop is not loop:
            self._timer_loop = loop
            loop.call_later(FLUSH_DELAY, self._due)

    def _due(self) -> None:
        self.acquire()
        try:
            self._timer_loop = None
            self._write_pending()
        except Exception:  # a failing stream: the next emit reports it (handleError)
            pass
        finally:
            self.release()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
            super().flush()
        finally:
            self.release()

    def _write_pending(self) -> None:
        """Write the held lines, whole lines of at most PIPE_BUF bytes a write."""
        lines, self._pending = self._pending, []
        chunk: list[str] = []
        size = 0
        for line in lines:
            # at most 4 bytes a character in UTF-8; ASCII (nearly every line) is 1
            length = len(line) if line.isascii() else 4 * len(line)
            if chunk and size + length > PIPE_BUF:
                self._write("".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += length
        if chunk:
            self._write("".join(chunk))

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def configure(level: str) -> None:
    """Log records at `level` and above to stderr (idempotent, as basicConfig is)."""
    handler = BatchedLines()
    handler.setFormatter(LineFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if handler in logging.getLogger().handlers:
        os.register_at_fork(before=handler.flush)  # a worker must not inherit held lines
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no caller's file and line: the format prints neither


def flush() -> None:
    """Write every held line now: for a process that ends without logging.shutdown (a
    multiprocessing worker leaves with os._exit)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
