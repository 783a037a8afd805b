"""A loop closed while a task waits inside a long deadline can still be collected: the wheel
of buckets (kept per loop, weakly) must not hold the loop through the task it would cancel."""

from __future__ import annotations

import asyncio
import gc
import weakref

from engine.runtime.lifecycle.deadline import deadline


async def _waits(inside: asyncio.Event) -> None:
    with deadline(60):  # a long bound: it joins the loop's wheel of buckets
        inside.set()
        await asyncio.Event().wait()


async def _start() -> asyncio.Task[None]:
    inside = asyncio.Event()
    task = asyncio.ensure_future(_waits(inside))
    await asyncio.wait_for(inside.wait(), 5)
    return task


def _closed_loop_with_a_waiting_bound() -> weakref.ref[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    task = loop.run_until_complete(_start())
    assert not task.done()
    loop.close()  # the task is left pending, as when a test or an embedder drops its loop
    return weakref.ref(loop)


def test_a_closed_loop_with_a_waiting_bound_is_collected() -> None:
    gone = _closed_loop_with_a_waiting_bound()
    gc.collect()
    assert gone() is None
