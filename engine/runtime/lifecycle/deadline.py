"""`with deadline(seconds):` asyncio.timeout's behaviour, for less work per use.

A request sets two bounds on its way (its overall deadline, and the exchange's bound on a
step with a `stream:` spec), each of minutes, and nearly always finishes long before either.
`asyncio.timeout` arms and disarms a timer of its own per use (under uvloop a libuv timer,
about as costly as the rest of the request's routing) and runs two coroutines to enter and
leave. Here a bound of `COARSE_FROM` seconds or more instead joins the bucket of the whole
second it ends in (the loop time rounded up, as aiohttp rounds its own timeouts from 5 s on,
so it may fire up to a second late): one timer per second serves every bound ending in it,
armed by the first to join, and leaving is a dict deletion. A shorter bound keeps an exact
timer of its own.

On expiry the task is cancelled, and the CancelledError that leaves the `with` block becomes
TimeoutError, exactly as with asyncio.timeout: a cancellation from elsewhere (the client
left, shutdown) stays a cancellation."""

from __future__ import annotations

import asyncio
import contextvars
import math
import weakref
from types import TracebackType

COARSE_FROM = 5.0
GRAIN = 1.0  # seconds: a coarse bound fires at the end of its bucket, at most this late
# Timers run in an empty context of their own: they read no context variable and hold none.
# (Not one shared Context: a context is entered while its callback runs, and a loop in
# another thread could then not enter it, its timer failing with RuntimeError.)


class Deadline:
    """One bound on the current task (see the module docstring); `clear()` lifts it."""

    __slots__ = ("_bucket", "_cancelling", "_delay", "_expired", "_handle", "_task")

    def __init__(self, delay: float | None) -> None:
        self._delay = delay
        # weakly: the loop's wheel holds this entry, and through a strong task it would hold
        # the loop too (a loop closed with a task still waiting could never be collected)
        self._task: weakref.ref[asyncio.Task[object]] | None = None
        self._cancelling = 0
        self._bucket: dict[Deadline, None] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    def __enter__(self) -> Deadline:
        delay = self._delay
        if delay is None:
            return self  # no bound: nothing to arm, nothing to undo
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline is set from within a task")
        self._task = weakref.ref(task)
        self._cancelling = task.cancelling()
        when = loop.time() + delay
        if delay >= COARSE_FROM:
            last = _last  # (the wheel of the loop used last: _wheel's own first test, inline)
            wheel = last[1] if last is not None and last[0]() is loop else _wheel(loop)
            end = math.ceil(when / GRAIN)
            bucket = wheel.buckets.get(end)
            if bucket is None:
                bucket = wheel.add(loop, end)
            bucket[self] = None
            self._bucket = bucket
        else:
            self._handle = loop.call_at(when, self._expire, context=contextvars.Context())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bucket is not None:  # (clear(), inline: most bounds are coarse)
            self._bucket.pop(self, None)
            self._bucket = None
        elif self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._expired:
            task = self._task() if self._task is not None else None
            assert task is not None  # the task running this block
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def expired(self) -> bool:
        """The bound fired (as asyncio.Timeout.expired)."""
        return self._expired

    def clear(self) -> None:
        """No bound any more (a bound that has already fired stays fired)."""
        if self._bucket is not None:
            self._bucket.pop(self, None)
            self._bucket = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self) -> None:
        self._bucket = self._handle = None
        task = self._task() if self._task is not None else None
        if task is not None and not self._expired:
            self._expired = True
            task.cancel()


# `with deadline(seconds):` a bound of `delay` seconds on the current task from the `with` on
# (None: none). The class itself: a wrapper function would cost a call per use.
deadline = Deadline


class _Wheel:
    """The buckets of one event loop: {end of bucket / GRAIN: bounds ending in it}. It holds
    no reference to its loop (the loop is the key it is kept under, weakly)."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: dict[int, dict[Deadline, None]] = {}

    def add(self, loop: asyncio.AbstractEventLoop, end: int) -> dict[Deadline, None]:
        """A new bucket, its timer armed (Deadline.__enter__ joins the existing ones)."""
        bucket = self.buckets[end] = {}
        loop.call_at(end * GRAIN, self._fire, end, context=contextvars.Context())
        return bucket

    def _fire(self, end: int) -> None:
        for entry in list(self.buckets.pop(end, ())):
            entry._expire()


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], _Wheel] | None = None  # one loop, usually


def _wheel(loop: asyncio.AbstractEventLoop) -> _Wheel:
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = _Wheel()
    _last = (weakref.ref(loop), wheel)
    return wheel
