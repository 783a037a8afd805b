"""engine/logline.py: the access line without a LogRecord writes the bytes logger.info would,
and any other logging setup (handlers, filters, formatters, record factories) still gets
records."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pytest

from engine import logline
from engine.logsetup import FORMAT, BatchedLines, LineFormatter

ACCESS = "request_id=%s method=%s path=%s model=%s provider=%s status=%s duration_ms=%.1f"
MESSAGES: list[tuple[str, tuple[object, ...]]] = [
    (ACCESS, ("req_0123456789abcdef01234567", "POST", "/v1/images/gen", "m", "p", 200, 3.456)),
    (ACCESS, ("req_x", "GET", "/v1/models/é✓", "-", "-", 404, 0.04999)),
    ("no arguments, a literal %s stays", ()),
    ("two %s %r", ("a", None)),
]
CREATED = (1765000000.1234, 1765000000.9999, 1765000001.0, 1700000000.5)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger tree of its own (no propagation to root) with logsetup's handler, writing at
    once (no event loop runs in these tests)."""
    log = logging.getLogger(f"test.logline.{time.monotonic_ns()}")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = BatchedLines(io.StringIO())
    handler.setFormatter(LineFormatter())
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)


def _written(log: logging.Logger) -> str:
    stream = log.handlers[0].stream  # type: ignore[attr-defined]
    text: str = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    return text


def _count_records(monkeypatch: pytest.MonkeyPatch) -> list[logging.LogRecord]:
    made: list[logging.LogRecord] = []
    stock = logging.Logger.makeRecord

    def counting(self: logging.Logger, *args: object, **kwargs: object) -> logging.LogRecord:
        record = stock(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(record)
        return record

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    return made


def test_the_line_is_byte_identical_to_logger_info_and_the_stock_formatter(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _count_records(monkeypatch)
    stock = logging.Formatter(FORMAT)
    for created in CREATED:
        monkeypatch.setattr(time, "time", lambda created=created: created)
        for msg, args in MESSAGES:
            logline.info(logger, msg, *args)
            fast = _written(logger)
            assert made == []  # no record was made
            logger.info(msg, *args)
            slow = _written(logger)
            record = made.pop()
            assert fast == slow == stock.format(record) + "\n"


def test_below_the_level_nothing_is_written(logger: logging.Logger) -> None:
    logger.setLevel(logging.WARNING)
    logline.info(logger, ACCESS, *MESSAGES[0][1])
    assert _written(logger) == ""


def test_another_handler_in_the_tree_gets_the_record(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _count_records(monkeypatch)
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    child = logger.getChild("access")
    child.addHandler(extra)
    logline.info(child, ACCESS, *MESSAGES[0][1])
    assert [r.getMessage() for r in seen] == [ACCESS % MESSAGES[0][1]]
    assert made == seen
    assert _written(logger).endswith(f" INFO {child.name} {ACCESS % MESSAGES[0][1]}\n")


def test_filters_formatters_levels_and_record_factories_are_honoured(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = logger.handlers[0]
    logger.addFilter(lambda record: record.args[1] != "GET")  # type: ignore[index]
    logline.info(logger, ACCESS, *MESSAGES[1][1])
    assert _written(logger) == ""  # the logger's filter dropped it
    logger.filters.clear()

    handler.addFilter(lambda record: False)
    logline.info(logger, ACCESS, *MESSAGES[0][1])
    assert _written(logger) == ""  # the handler's filter dropped it
    handler.filters.clear()

    handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    logline.info(logger, "a %s", "b")
    logline.info(logger, "c %s %s", "d", "e")
    assert _written(logger) == "INFO|a b\nINFO|c d e\n"
    handler.setFormatter(LineFormatter())

    handler.setLevel(logging.WARNING)
    logline.info(logger, "dropped %s", "x")
    assert _written(logger) == ""
    handler.setLevel(logging.NOTSET)

    factory = logging.getLogRecordFactory()

    def tagged(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.msg = "tagged " + str(record.msg)
        return record

    monkeypatch.setattr(logging, "_logRecordFactory", tagged)
    logline.info(logger, "m %s", "n")
    assert _written(logger).endswith(" tagged m n\n")


def test_a_single_mapping_argument_is_formatted_as_logging_does(logger: logging.Logger) -> None:
    logline.info(logger, "a=%(a)s", {"a": 1})
    assert _written(logger).endswith(" a=1\n")


def test_pytest_caplog_receives_the_record(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    logger.addHandler(caplog.handler)
    try:
        logline.info(logger, ACCESS, *MESSAGES[0][1])
    finally:
        logger.removeHandler(caplog.handler)
    assert [r.getMessage() for r in caplog.records] == [ACCESS % MESSAGES[0][1]]


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("stderr is gone")


def test_a_failing_stream_is_reported_as_logging_reports_it(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = logger.handlers[0]
    assert isinstance(handler, BatchedLines)
    handler.setStream(_Broken())
    logline.info(logger, "lost %s", "line")  # no exception reaches the caller
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "stderr is gone" in err and "lost %s" in err


def test_logging_reconfigured_after_a_line_is_honoured(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler found for a line is kept; whatever changes the tree afterwards (in place,
    as addHandler and addFilter do, or by a logger created in between) is seen."""
    made = _count_records(monkeypatch)
    child = logger.getChild("a.access")
    line = ACCESS % MESSAGES[0][1]
    logline.info(child, ACCESS, *MESSAGES[0][1])
    assert made == [] and _written(logger).endswith(f" {line}\n")

    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(extra)  # a second handler on the way
    logline.info(child, ACCESS, *MESSAGES[0][1])
    assert [r.getMessage() for r in seen] == [line] and made == seen
    logger.removeHandler(extra)
    logline.info(child, ACCESS, *MESSAGES[0][1])
    assert len(made) == 1 and _written(logger).count(line) == 2  # without a record again

    handler = logger.handlers[0]
    handler.addFilter(lambda record: False)
    logline.info(child, ACCESS, *MESSAGES[0][1])
    assert _written(logger) == ""
    handler.filters.clear()

    between = logging.getLogger(f"{logger.name}.a")  # now the access logger's parent
    between.addHandler(extra)
    logline.info(child, ACCESS, *MESSAGES[0][1])
    assert [r.getMessage() for r in seen] == [line] * 2
    assert _written(logger).endswith(f" {line}\n")
    between.removeHandler(extra)
    between.propagate = False  # the line reaches no handler now
    logline.info(child, ACCESS, *MESSAGES[0][1])
    assert _written(logger) == ""
