"""Writes that no request waits for, sent in batches: lease releases and success counters.

A release goes out on the next turn of the event loop, with every other release made by then
in the same pipeline; a late release only keeps a slot taken a little longer, so the
fleet-wide limit still holds. Success counters (shown by /admin/keys) are summed here and sent
at most `counter_delay` later. One flush runs at a time; when one fails, the leases it carried
expire by their TTL and its counts are lost (they are only statistics).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

Guard = Callable[[Awaitable[Any]], Awaitable[Any]]


class Outbox:
    def __init__(
        self, client: aioredis.Redis, guard: Guard, keep_rows_ms: int, counter_delay: float = 1.0
    ) -> None:
        self.client = client
        self.guard = guard
        self.keep_rows_ms = keep_rows_ms
        self.counter_delay = counter_delay
        self._releases: list[tuple[str, str]] = []  # (lease zset, token)
        self._successes: dict[str, int] = {}  # health hash -> successes not yet sent
        self._flushing: asyncio.Task[None] | None = None
        self._timer: asyncio.Handle | None = None  # uvloop's call_later(0) is a plain Handle
        self._due = 0.0

    def release(self, lease: str, token: str) -> None:
        self._releases.append((lease, token))
        self._soon(0.0)

    def take_releases(self, prefix: str) -> list[tuple[str, str]]:
        """The releases not sent yet of leases named `prefix…` (one provider's: one slot of a
        Redis Cluster), for the caller to send with its own call."""
        mine = [item for item in self._releases if item[0].startswith(prefix)]
        if mine:
            self._releases = [item for item in self._releases if not item[0].startswith(prefix)]
        return mine

    def success(self, health: str) -> None:
        self._successes[health] = self._successes.get(health, 0) + 1
        self._soon(self.counter_delay)

    def _soon(self, delay: float) -> None:
        if self._flushing is not None:
            return  # the running flush looks again when it ends
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if self._timer is not None:
            if self._due <= due:
                return  # already due as soon
            self._timer.cancel()
        self._timer, self._due = loop.call_later(delay, self._start), due

    def _start(self) -> None:
        self._timer = None
        if self._flushing is None and (self._releases or self._successes):
            self._flushing = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self._releases:  # counters ride along; alone they wait for their delay
                await self._send()
        finally:
            self._flushing = None
            if self._successes:
                self._soon(self.counter_delay)

    async def _send(self) -> None:
        releases, self._releases = self._releases, []
        successes, self._successes = self._successes, {}
        if not releases and not successes:
            return
        pipe = self.client.pipeline(transaction=False)
        for lease, token in releases:
            pipe.zrem(lease, token)
        for health, count in successes.items():
            pipe.hincrby(health, "successes", count)
            pipe.pexpire(health, self.keep_rows_ms)
        await self.guard(pipe.execute())

    async def flush(self) -> None:
        """Send everything now (before a report or at shutdown)."""
        if self._flushing is not None:
            await asyncio.wait([self._flushing], timeout=5)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._send()
