"""bench.census counts what a request does: timers by origin, calls by package, functions."""

from __future__ import annotations

import asyncio
import sys

import pytest

from bench import census
from bench.census import CountingLoop


def test_timers_are_counted_by_the_code_that_armed_them() -> None:
    async def armed() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, CountingLoop)
        loop.counting = True
        async with asyncio.timeout(30):
            loop.call_later(30, print).cancel()
            await asyncio.sleep(0)
        loop.counting = False
        loop.call_later(30, print).cancel()  # not counted

    with asyncio.Runner(loop_factory=CountingLoop) as runner:
        runner.run(armed())
        loop = runner.get_loop()
        assert isinstance(loop, CountingLoop)
        assert loop.timers == {"test_census:armed": 2}


def test_the_census_of_a_few_requests(capsys: pytest.CaptureFixture[str]) -> None:
    assert census.main(["--requests", "10", "--no-floor"]) == 0
    out = capsys.readouterr().out
    assert "10 requests at concurrency 1" in out
    assert "calls  engine/api" in out and "distinct Python functions" in out


def test_bytecodes_are_counted_by_package_and_by_function() -> None:
    def work() -> int:
        total = 0
        for i in range(3):
            total += i
        return total

    counter = census.Bytecodes(detail="test_census")
    sys.settrace(counter)
    try:
        work()
    finally:
        sys.settrace(None)
    assert counter.counts["test_census"] > 10  # a loop of three turns runs a few dozen
    assert counter.functions == {
        "test_census.py:test_bytecodes_are_counted_by_package_and_by_function.<locals>.work": (
            counter.counts["test_census"]
        )
    }
    quiet = census.Bytecodes()  # no detail: by package only
    sys.settrace(quiet)
    try:
        work()
    finally:
        sys.settrace(None)
    assert quiet.counts == counter.counts and not quiet.functions
