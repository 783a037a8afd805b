"""Bound how many requests hold a large body (an upstream answer or download over 1 MB) at
once. Big base64 answers are memory, not CPU: without a bound, 64 concurrent 1.5 MB answers
and their copies push the process past a gigabyte. A request takes one ticket the first time
it meets a large body and keeps it until its response is written, so its copies are freed
before another request's arrive. The ticket rides in a context variable: every task the
request starts (n > 1 calls, downloads) sees the same one.

A request waiting for a slot must not buffer its body meanwhile, or memory grows with the
number of waiting clients after all. `read_capped` takes the slot before it reads a body
whose length says it is large, and while it waits aiohttp's flow control keeps the rest of
the body in the socket: upstream sessions use a small `READ_BUFFER` (aiohttp pauses the
transport beyond twice that), so a waiting request holds one socket read (the event loop
reads at most 256 KB at a time) and no more. A body of unknown length counts as large from
`UNSIZED_LARGE` on, and is read in small steps until its request holds a slot.

An event stream is long-lived, so holding a slot from its first large event to its end would
let four image streams shut out everyone else for minutes. A large event-stream line takes
the slot instead from `UNSIZED_LARGE` on (`hold_event`, before the rest is read) until the
client endpoint has written the event (`event_written`); the request then gives the slot
back, and takes it again for its next large event. The ticket counts the large events on
their way through (`pending`): the slot goes back only when none is left."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Literal, Protocol

import aiohttp

LARGE_BODY = 1024 * 1024
UNSIZED_LARGE = 128 * 1024  # without a Content-Length, a body is large from here on
READ_BUFFER = 16 * 1024  # `read_bufsize` of every upstream session (see the docstring)
WAIT_STEP = READ_BUFFER  # reads before the slot is held (a larger read raises the buffer)
_STEP = 1024 * 1024  # reads while it is held (or with no gate at all)


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

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot (for tests and the admin view)."""
        return len(self._slots._waiters or ())


class Ticket:
    """One request's claim on a slot; every task of the request shares it."""

    __slots__ = ("_claim", "_slots", "pending")

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._claim: asyncio.Future[Literal[True]] | None = None
        self.pending = 0  # large stream events read but not yet written to the client

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

    def event_written(self) -> None:
        """One large event (or a downloaded image) reached the client: with no other large
        event on its way, the slot goes back. A claim still waiting is left alone."""
        if self.pending:
            self.pending -= 1
        if not self.pending and self.held:
            self.release()


CURRENT: ContextVar[Ticket | None] = ContextVar("pixgate_body_ticket", default=None)


@contextlib.contextmanager
def own_ticket(gate: BodyGate) -> Iterator[Ticket]:
    """For work that outlives its request (an async job): a ticket of its own, released
    when the work ends. It must not claim its request's: the request released that with its
    `202`, and a claim made after that would never be released, a slot lost for good."""
    ticket = gate.ticket()
    token = CURRENT.set(ticket)
    try:
        yield ticket
    finally:
        ticket.release()
        CURRENT.reset(token)


async def hold_event() -> None:
    """A large event-stream line: its request holds (or waits for) a slot before reading the
    rest, until `event_written`, or until the request ends."""
    ticket = CURRENT.get()
    if ticket is not None:
        ticket.pending += 1
        await ticket.acquire()


def event_written() -> None:
    """Call after writing an image event to the client (see the module docstring)."""
    ticket = CURRENT.get()
    if ticket is not None:
        ticket.event_written()


async def hold_for(size: int, *, sized: bool = True) -> None:
    """Call as a body grows: from LARGE_BODY on (UNSIZED_LARGE when its length is unknown),
    this request holds (or waits for) a slot."""
    if size >= (LARGE_BODY if sized else UNSIZED_LARGE):
        ticket = CURRENT.get()
        if ticket is not None:
            await ticket.acquire()


def _holding() -> bool:
    """True when this request may read fast: it holds its slot, or there is no gate."""
    ticket = CURRENT.get()
    return ticket is None or ticket.held


async def read_capped(
    content: aiohttp.StreamReader, limit: int, expected: int | None = None, *, gated: bool = True
) -> bytes | bytearray | None:
    """The whole body, or None when it is larger than `limit` (read no further than that).
    `expected` is the body's length when known (Content-Length of an uncompressed answer);
    `gated=False` for bodies small by their limit (a chat answer), which take no slot.
    `StreamReader.read(n)` returns what has arrived so far, not n bytes: loop to the end.
    With the length known, chunks go into one buffer of that size: a big answer then costs one
    allocation instead of dozens of pieces and a join (less heap churn and fragmentation)."""
    if expected is not None and 0 < expected <= limit:
        if gated and expected >= LARGE_BODY:  # (hold_for's own test, without its coroutine)
            await hold_for(expected)  # before reading: the rest stays in the socket meanwhile
        step = min(expected, _STEP)
        # what has arrived already, without a coroutine (a small body came with its head)
        chunk = content.read_nowait(step) or await content.read(step)
        if len(chunk) == expected and content.at_eof():
            return chunk  # a small body, all here in one read: no copy
        buffer = bytearray(expected)
        view = memoryview(buffer)
        size = 0
        while chunk:
            view[size : size + len(chunk)] = chunk
            size += len(chunk)
            if size == expected:
                break
            chunk = await content.read(min(expected - size, _STEP))
        view.release()
        if size < expected:
            return buffer[:size]  # the body ended early
        return buffer if await content.read(1) == b"" else None
    chunks: list[bytes] = []
    size = 0
    while True:
        step = _STEP if not gated or _holding() else WAIT_STEP
        chunk = await content.read(min(limit + 1 - size, step))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
        if gated:
            await hold_for(size, sized=False)


class _Answer(Protocol):
    """An answer's head: aiohttp's ClientResponse, or the step client's (calls/wire)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content_length(self) -> int | None: ...


def known_length(resp: _Answer) -> int | None:
    """The body's length as read, when the answer says it: a compressed answer's
    Content-Length counts the bytes on the wire, not the (larger) decompressed body."""
    encoding = resp.headers.get("Content-Encoding")  # none: most answers, no text to clean
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return resp.content_length
    return None
