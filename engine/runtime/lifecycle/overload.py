"""Bound the work one process takes on, so memory under load follows the configuration and
not the number of clients (issue 12, item 5).

Two bounds, both counted per process and both answered with a 503 the client can retry:

- `Limits.in_flight`: API requests served at once (PIXGATE_MAX_IN_FLIGHT). A request beyond it
  is refused at once, before its body is read: queueing it would hold its connection and its
  body all the same.
- `ByteBudget`: bytes of request bodies and fetched input images held at once
  (PIXGATE_MAX_BUFFERED_BYTES). A request reserves a body's declared length before reading it
  (the rest stays in the socket meanwhile: aiohttp stops reading a request's stream beyond
  its small buffer), and a fetched image's length before or as it is read. When the bytes are
  not free within `wait` seconds the request gets the 503; it never waits unbounded.

Like the large-body slots (bodygate.py), a request's reservations ride in a context variable
(`CURRENT`): the tasks it starts (n > 1 calls, input fetches) add to the same `Charge`, and the
middleware gives all of it back when the request ends, however it ends. Upstream answers are
bounded by the large-body slots, not here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar

RETRY_AFTER = 1  # seconds a refused client is told to wait: load changes that fast


class Overloaded(Exception):
    """The process is at one of its bounds; `reason` is `in_flight` or `buffered_bytes`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InFlight:
    """A counter of requests being served, refusing beyond `limit` (0: no bound)."""

    __slots__ = ("count", "limit", "on_refuse", "refused")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.refused = 0
        self.on_refuse: Callable[[str], None] | None = None  # the metrics' counter

    def enter(self) -> None:
        if self.limit and self.count >= self.limit:
            self.refused += 1
            if self.on_refuse is not None:
                self.on_refuse("in_flight")
            raise Overloaded(
                "in_flight",
                f"the gateway is serving its limit of {self.limit} requests; retry shortly",
            )
        self.count += 1

    def leave(self) -> None:
        self.count -= 1


class ByteBudget:
    """`limit` bytes shared by every request (0: no bound), handed out first come, first
    served: a waiting request is not overtaken by smaller ones arriving after it."""

    def __init__(self, limit: int, wait: float) -> None:
        self.limit = limit
        self.wait = wait
        self.used = 0
        self.refused = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self.on_refuse: Callable[[str], None] | None = None  # the metrics' counter

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_take(self, size: int) -> bool:
        """Reserve `size` bytes if they are free now (and nobody waits before)."""
        if size <= 0:
            return True
        if not self.limit or (not self._waiters and self.used + size <= self.limit):
            self.used += size
            return True
        return False

    async def take(self, size: int) -> None:
        """Reserve `size` bytes, waiting at most `wait` seconds, or raise Overloaded."""
        if self.try_take(size):
            return
        if size > self.limit:
            self._refuse(size)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(self.wait):
                await future
        except TimeoutError:
            if future.done() and not future.cancelled():
                return  # granted just as the wait ran out
            self._leave(entry)
            self._refuse(size)
        except BaseException:  # cancelled: the client left, or the request's deadline
            if future.done() and not future.cancelled():
                self.give(size)  # granted meanwhile: hand it on
            else:
                self._leave(entry)
            raise

    def _leave(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        entry[1].cancel()
        self._waiters.remove(entry)
        self._grant()  # it may have been the head blocking smaller ones

    def give(self, size: int) -> None:
        self.used -= size
        if self._waiters:
            self._grant()

    def _grant(self) -> None:
        while self._waiters:
            size, future = self._waiters[0]
            if self.used + size > self.limit:
                return
            self._waiters.popleft()
            self.used += size
            future.set_result(None)

    def _refuse(self, size: int) -> None:
        self.refused += 1
        if self.on_refuse is not None:
            self.on_refuse("buffered_bytes")
        raise Overloaded(
            "buffered_bytes",
            f"the gateway holds its limit of {self.limit} bytes of request bodies and input "
            f"images; {size} more did not fit within {self.wait:g}s; retry shortly",
        )


class Limits:
    """The process's bounds (one per app)."""

    def __init__(self, max_in_flight: int, max_buffered: int, wait: float) -> None:
        self.in_flight = InFlight(max_in_flight)
        self.buffered = ByteBudget(max_buffered, wait)

    def charge(self) -> Charge:
        return Charge(self.buffered)


class Charge:
    """One request's reserved bytes; `close` gives them all back (the middleware's end)."""

    __slots__ = ("_budget", "closed", "held")

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0
        self.closed = False

    def try_take(self, size: int) -> bool:
        if self.closed or not self._budget.try_take(size):
            return self.closed
        self.held += size
        return True

    async def take(self, size: int) -> None:
        if self.closed:
            return  # work the request left running (an async job) is bounded by its own limits
        await self._budget.take(size)
        if self.closed:  # the request ended while this waited
            self._budget.give(size)
            return
        self.held += size

    def close(self) -> None:
        self.closed = True
        held, self.held = self.held, 0
        if held:
            self._budget.give(held)


CURRENT: ContextVar[Charge | None] = ContextVar("pixgate_byte_charge", default=None)


async def take_bytes(size: int) -> None:
    """Reserve `size` bytes for the current request (no-op outside one); Overloaded when they
    are not free within the budget's wait."""
    charge = CURRENT.get()
    if charge is not None:
        await charge.take(size)
