"""`pixgate serve`'s log lines: the cheaper formatter writes what logging's own did."""

from __future__ import annotations

import logging
import sys

from engine.logsetup import FORMAT, LineFormatter


def _record(created: float, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    record = logging.LogRecord("pixgate.access", logging.INFO, __file__, 1, "x=%s", (7,), info)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


def test_lines_match_the_stock_formatter_across_seconds() -> None:
    stock, ours = logging.Formatter(FORMAT), LineFormatter()
    # the same second twice, the next one, back to an earlier one, and a traceback
    for created in (1765000000.1234, 1765000000.9999, 1765000001.0, 1700000000.5, 1765000001.25):
        assert ours.format(_record(created)) == stock.format(_record(created))
    assert ours.format(_record(1765000002.5, exc=True)) == stock.format(
        _record(1765000002.5, exc=True)
    )
    stacked, stock_stacked = _record(1765000003.5), _record(1765000003.5)
    stacked.stack_info = stock_stacked.stack_info = "Stack (most recent call last):\n  here"
    assert ours.format(stacked) == stock.format(stock_stacked)


def test_an_explicit_date_format_is_honoured() -> None:
    record = _record(1765000000.5)
    assert LineFormatter().formatTime(record, "%Y") == logging.Formatter().formatTime(record, "%Y")
