"""A bound fires on an event loop whatever another thread's loop is doing at that moment (two
threads' loops, each with its own deadlines: the timers must not share one entered context,
which a second thread cannot enter)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import pytest

from engine.runtime.lifecycle.deadline import deadline


def test_a_bound_fires_while_another_threads_bound_is_firing() -> None:
    inside = threading.Event()  # the other thread is in its bound's timer callback
    leave = threading.Event()

    class SlowToCancel(asyncio.Task[Any]):
        def cancel(self, msg: Any = None) -> bool:
            inside.set()
            leave.wait(5)
            return super().cancel(msg)

    def other_thread() -> None:
        loop = asyncio.new_event_loop()

        def factory(
            loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kw: Any
        ) -> Any:
            return SlowToCancel(coro, loop=loop, **kw)  # kw: uvloop passes the context

        loop.set_task_factory(factory)

        async def bounded() -> None:
            with deadline(0.01):
                await asyncio.sleep(5)

        try:
            with pytest.raises(TimeoutError):
                loop.run_until_complete(bounded())
        finally:
            loop.close()

    thread = threading.Thread(target=other_thread, daemon=True)
    thread.start()
    try:
        assert inside.wait(5)

        async def bounded_here() -> None:
            with deadline(0.01):
                await asyncio.sleep(2)  # the bound must end this, not the sleep

        with pytest.raises(TimeoutError):
            asyncio.run(bounded_here())
    finally:
        leave.set()
        thread.join(5)
    assert not thread.is_alive()
