"""`deadline()` behaves as asyncio.timeout does (the reference, run side by side): expiry
becomes TimeoutError, a cancellation from elsewhere stays one, `clear()` lifts the bound. Long
bounds share one timer per second; short ones are exact."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine.runtime.lifecycle import deadline as deadline_module
from engine.runtime.lifecycle.deadline import deadline


@contextlib.asynccontextmanager
async def _reference(delay: float | None) -> Any:
    async with asyncio.timeout(delay) as bound:
        yield bound


@contextlib.asynccontextmanager
async def _ours(delay: float | None) -> Any:
    with deadline(delay) as bound:
        yield bound


Bound = Callable[[float | None], Any]


@pytest.fixture(params=["asyncio", "deadline", "deadline-coarse"])
def bound(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Bound:
    """The reference, ours with short bounds on exact timers, ours on per-second buckets."""
    if request.param == "deadline-coarse":
        monkeypatch.setattr(deadline_module, "COARSE_FROM", 0.01)
        monkeypatch.setattr(deadline_module, "GRAIN", 0.1)
    return _reference if request.param == "asyncio" else _ours


async def test_an_expired_bound_raises_timeout_and_leaves_the_task_uncancelled(
    bound: Bound,
) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # raised long before the sleep could end on its own
        async with bound(0.05):
            await asyncio.sleep(60)
    assert time.monotonic() - started >= 0.04  # never early (how late depends on the load)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # the task goes on normally


async def test_a_block_done_in_time_is_not_cancelled_later(bound: Bound) -> None:
    async with bound(0.05):
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)  # past the bound (and its bucket)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_lifting_the_bound_lets_the_block_run_on(bound: Bound) -> None:
    async with bound(0.05) as b:
        if isinstance(b, asyncio.Timeout):
            b.reschedule(None)
        else:
            b.clear()
        await asyncio.sleep(0.2)
    assert not b.expired()


async def test_no_bound_is_no_bound(bound: Bound) -> None:
    async with bound(None):
        await asyncio.sleep(0.01)


async def test_a_cancellation_from_elsewhere_stays_a_cancellation(bound: Bound) -> None:
    async def body() -> None:
        async with bound(0.05):
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_caught_inside_the_block_is_not_raised_again(
    bound: Bound,
) -> None:
    async with bound(0.05) as b:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)
    assert b.expired()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_nested_bounds_each_catch_their_own(bound: Bound) -> None:
    async with bound(30) as outer:
        with pytest.raises(TimeoutError):
            async with bound(0.05):
                await asyncio.sleep(5)
        await asyncio.sleep(0)
    assert not outer.expired()


async def test_long_bounds_ending_in_one_second_share_a_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(deadline_module, "COARSE_FROM", 0.01)
    loop = asyncio.get_running_loop()
    wheel = deadline_module._wheel(loop)
    with deadline(100), deadline(100.0001):
        assert sum(len(bucket) for bucket in wheel.buckets.values()) == 2
        assert len(wheel.buckets) <= 2  # one second, or two when the seconds turn between
    assert sum(len(bucket) for bucket in wheel.buckets.values()) == 0  # left on exit


def test_it_works_on_uvloop_too() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        with pytest.raises(TimeoutError):
            with deadline(0.02):
                await asyncio.sleep(5)
        with deadline(30):
            await asyncio.sleep(0)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
