"""`info(logger, msg, *args)`: `logger.info(msg, *args)` for a line logged on every request
(the access line), without a LogRecord when nothing but pixgate's own handler would see it.

Making the LogRecord and passing it through the logger tree and the handler cost about 2.5 µs
of the 4 µs an access line took (bench, uvloop). When the only handler the record would
reach is the BatchedLines with a LineFormatter that `logsetup.configure` installs, and no
filter, record factory or logger class could change what happens to it, the formatter puts
the line together from the same fields and the handler holds it under its lock: the same
bytes, the same order. Anything else (a handler or filter an operator's or a test's logging
setup added, another formatter or record factory) gets `logger.info` as before, and so do
messages whose single argument logging would treat as a mapping.
"""

from __future__ import annotations

import logging

from .logsetup import BatchedLines, LineFormatter


def info(logger: logging.Logger, msg: str, *args: object) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _sole_handler(logger) if len(args) != 1 else None
    if handler is None:
        logger.info(msg, *args)
        return
    formatter = handler.formatter
    assert isinstance(formatter, LineFormatter)  # _sole_handler checked it
    handler.emit_info(formatter, logger.name, msg % args if args else msg)


def _sole_handler(logger: logging.Logger) -> BatchedLines | None:
    """The handler an INFO record of `logger` would reach, when it is the only one, is
    logsetup's own and nothing on the way looks at records; else None."""
    if (
        logger.filters
        or logger.disabled
        or type(logger) is not logging.Logger
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    found: logging.Handler | None = None
    node: logging.Logger | None = logger
    while node is not None:
        for handler in node.handlers:
            if found is not None:
                return None
            found = handler
        node = node.parent if node.propagate else None
    if (
        type(found) is not BatchedLines
        or found.filters
        or found.level > logging.INFO
        or type(found.formatter) is not LineFormatter
    ):
        return None
    return found
