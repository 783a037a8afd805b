"""Bound how many requests hold a large body (an upstream answer or download over 1 MB) at
once. Big base64 answers are memory, not CPU: without a bound, 64 concurrent 1.5 MB answers
and their copies push the process past a gigabyte. A request takes one ticket the first time
it meets a large body and keeps it until its response is written, so its copies are freed
before another request's arrive. The ticket rides in a context variable: every task the
request starts (n > 1 calls, downloads) sees the same one."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Literal

LARGE_BODY = 1024 * 1024


class BodyGate:
    def __init__(self, limit: int = 4) -> None:
        if limit < 1:
            raise ValueError("the large-body limit must be at least 1")
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)

    def ticket(self) -> Ticket:
        return Ticket(self._slots)

    @property
    def free(self) -> int:
        """Slots nobody holds (for tests and the admin view)."""
        return self._slots._value


class Ticket:
    """One request's claim on a slot; every task of the request shares it."""

    __slots__ = ("_claim", "_slots")

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._claim: asyncio.Future[Literal[True]] | None = None

    @property
    def held(self) -> bool:
        claim = self._claim
        return claim is not None and claim.done() and not claim.cancelled()

    async def acquire(self) -> None:
        claim = self._claim
        if claim is None:
            claim = asyncio.ensure_future(self._slots.acquire())
            self._claim = claim
        await asyncio.shield(claim)  # one waiter's cancellation must not drop the claim

    def release(self) -> None:
        claim, self._claim = self._claim, None
        if claim is None:
            return
        if claim.done() and not claim.cancelled() and claim.exception() is None:
            self._slots.release()
        else:
            claim.cancel()


CURRENT: ContextVar[Ticket | None] = ContextVar("pixgate_body_ticket", default=None)


async def hold_for(size: int) -> None:
    """Call as a body grows: from LARGE_BODY on, this request holds (or waits for) a slot."""
    if size >= LARGE_BODY:
        ticket = CURRENT.get()
        if ticket is not None:
            await ticket.acquire()
