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
from operator import attrgetter

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
    logsetup's own and nothing on the way looks at records; else None.

    Found by walking the logger tree once and kept with a copy of everything the walk read
    (`_state`): a line finds it again when the state is equal, read by two attrgetters in C
    instead of the walk's hundred bytecodes. Anything a reconfiguration changes (a handler
    added or removed anywhere on the way, a filter, level, formatter, propagate flag, a
    logger created in between, the record factory) makes the state differ: walked again."""
    kept = _found.get(logger)
    if kept is not None:
        state, nodes, handler = kept
        if _state(nodes, handler) == state:
            return handler
    found = _walk(logger)
    if found is None:
        _found.pop(logger, None)
        return None
    nodes, handler = found
    _found[logger] = (_copy(_state(nodes, handler)), nodes, handler)
    return handler


# What `_walk` reads of each logger on the way and of the handler, read in C.
_NODE = attrgetter("__class__", "disabled", "filters", "handlers", "propagate", "parent")
_HANDLER = attrgetter("__class__", "filters", "level", "formatter")
_State = tuple[object, list[tuple[object, ...]], tuple[object, ...]]
_found: dict[logging.Logger, tuple[_State, tuple[logging.Logger, ...], BatchedLines]] = {}


def _state(nodes: tuple[logging.Logger, ...], handler: BatchedLines) -> _State:
    return (logging.getLogRecordFactory(), [*map(_NODE, nodes)], _HANDLER(handler))


def _copy(state: _State) -> _State:
    """The state with its lists copied (they change in place: `addHandler`, `addFilter`)."""
    factory, nodes, handler = state
    return (
        factory,
        [tuple(list(v) if isinstance(v, list) else v for v in node) for node in nodes],
        tuple(list(v) if isinstance(v, list) else v for v in handler),
    )


def _walk(logger: logging.Logger) -> tuple[tuple[logging.Logger, ...], BatchedLines] | None:
    """The loggers an INFO record of `logger` passes and its one handler, when it is
    logsetup's own and nothing on the way looks at records; else None."""
    if (
        logger.filters
        or logger.disabled
        or type(logger) is not logging.Logger
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    found: logging.Handler | None = None
    nodes: list[logging.Logger] = []
    node: logging.Logger | None = logger
    while node is not None:
        nodes.append(node)
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
    return tuple(nodes), found
