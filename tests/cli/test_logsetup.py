"""`pixgate serve`'s log lines: the cheaper formatter writes what logging's own did, and
lines logged on the event loop are written together."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from engine.logsetup import FORMAT, MAX_PENDING, PIPE_BUF, BatchedLines, LineFormatter
from tests.gateway import REPO, free_port, serve_process, wait_healthy


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


class _Writes(io.StringIO):
    """A stream that keeps each flushed write apart, as the write() calls on stderr are."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def flush(self) -> None:
        text = self.getvalue()
        if text:
            self.writes.append(text)
            self.seek(0)
            self.truncate()


def _batched() -> tuple[logging.Logger, _Writes, BatchedLines]:
    stream = _Writes()
    handler = BatchedLines(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.batched.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, stream, handler


async def test_info_lines_on_the_loop_are_written_together_and_a_warning_at_once() -> None:
    logger, stream, _ = _batched()
    logger.info("one")
    logger.info("two")
    assert stream.writes == []  # held for the timer
    for _ in range(200):  # the timer's write, FLUSH_DELAY later (the wait is bounded)
        if stream.writes:
            break
        await asyncio.sleep(0.01)
    assert stream.writes == ["INFO one\nINFO two\n"]
    logger.info("three")
    logger.warning("four")  # written at once, after what was held
    assert stream.writes[1:] == ["INFO three\nWARNING four\n"]


def test_without_a_running_loop_each_line_is_written_at_once() -> None:
    logger, stream, _ = _batched()
    logger.info("one")
    logger.info("two")
    assert stream.writes == ["INFO one\n", "INFO two\n"]


async def test_flush_writes_held_lines_in_writes_of_whole_lines_up_to_pipe_buf() -> None:
    logger, stream, handler = _batched()
    lines = [f"{i:04d} " + "x" * 200 for i in range(MAX_PENDING - 2)] + ["é" * 300]
    for line in lines:
        logger.info(line)
    assert stream.writes == []
    handler.flush()
    assert "".join(stream.writes) == "".join(f"INFO {line}\n" for line in lines)
    assert len(stream.writes) > 1
    for write in stream.writes:
        assert write.endswith("\n") and len(write.encode()) <= PIPE_BUF


async def test_more_than_max_pending_lines_are_not_held() -> None:
    logger, stream, _ = _batched()
    for i in range(MAX_PENDING):
        logger.info("line %d", i)
    assert "".join(stream.writes).count("\n") == MAX_PENDING


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_with_sigterm_writes_every_access_line(tmp_path: Path, workers: int) -> None:
    port = free_port()
    proc = serve_process(REPO, port, tmp_path / "files", "--workers", str(workers))
    ids = [f"logline-{i:04d}" for i in range(40)]
    try:
        wait_healthy(port)
        for request_id in ids:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/health", headers={"X-Request-Id": request_id}
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    lines = err.decode().splitlines()
    for request_id in ids:
        assert sum(f"request_id={request_id} " in line for line in lines) == 1


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("stderr is gone")


async def test_a_failing_stream_on_the_timer_does_not_reach_the_event_loop() -> None:
    handler = BatchedLines(_Broken())
    logger = logging.getLogger("test.batched.broken")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        logger.info("lost")
        for _ in range(200):  # until the timer has run (the wait is bounded)
            if handler._timer_loop is None:
                break
            await asyncio.sleep(0.01)
        assert handler._timer_loop is None and errors == []
    finally:
        loop.set_exception_handler(None)
        logger.removeHandler(handler)
