"""Writes that no request waits for, sent in batches: lease releases and success counters.

A release goes out on the next turn of the event loop, with every other release made by then
in the same write, unless an acquire of its provider takes it along first; a late release only
keeps a slot taken a little longer, so the fleet-wide limit still holds. Success counters
(shown by /admin/keys) are summed here and sent `counter_delay` (1 s) after the first of them,
all in one write: a busy gateway sends them once a second, not with every release (a report
sends them first). One flush runs at a time; when one fails, the leases it carried expire by
their TTL and its counts are lost (they are only statistics).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .multiplex import Command, Multiplexed

Guard = Callable[[Awaitable[Any]], Awaitable[Any]]


class Outbox:
    def __init__(
        self, line: Multiplexed, guard: Guard, keep_rows_ms: int, counter_delay: float = 1.0
    ) -> None:
        self.line = line
        self.guard = guard
        self.keep_rows_ms = keep_rows_ms
        self.counter_delay = counter_delay
        self._releases: list[tuple[str, str]] = []  # (lease zset, token)
        self._successes: dict[str, int] = {}  # health hash -> successes not yet sent
        self._flushing: asyncio.Task[None] | None = None
        self._kicked = False  # a look at the releases is due on the next turn of the loop
        self._counting: asyncio.TimerHandle | None = None  # the counters' send is due then
        self._owed = False  # the counters' send is due now

    def release(self, lease: str, token: str) -> None:
        self._releases.append((lease, token))
        self._kick_soon()

    def take_releases(self, prefix: str) -> list[tuple[str, str]]:
        """The releases not sent yet of leases named `prefix…` (one provider's: one slot of a
        Redis Cluster), for the caller to send with its own call."""
        mine = [item for item in self._releases if item[0].startswith(prefix)]
        if mine:
            self._releases = [item for item in self._releases if not item[0].startswith(prefix)]
        return mine

    def success(self, health: str) -> None:
        self._successes[health] = self._successes.get(health, 0) + 1
        if self._flushing is None:  # else the running flush looks when it ends
            self._count_later()

    def _kick_soon(self) -> None:
        if not self._kicked and self._flushing is None:
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        self._kicked = False
        if self._releases and self._flushing is None:  # not all taken by an acquire meanwhile
            self._flushing = asyncio.create_task(self._flush_loop())

    def _count_later(self) -> None:
        if self._counting is None:
            loop = asyncio.get_running_loop()
            self._counting = loop.call_later(self.counter_delay, self._counters_due)

    def _counters_due(self) -> None:
        self._counting = None
        self._owed = True
        if self._flushing is None:  # else the running flush sends them next
            self._flushing = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self._releases or self._owed:  # also those made while a send was out
                await self._send(counters=self._owed)
        finally:
            self._flushing = None
            if self._releases:  # the loop was cancelled
                self._kick_soon()
            if self._successes:  # counted while that was out (or not due yet)
                self._count_later()

    async def _send(self, counters: bool = True) -> None:
        releases, self._releases = self._releases, []
        successes: dict[str, int] = {}
        if counters:
            successes, self._successes, self._owed = self._successes, {}, False
        if successes and self._counting is not None:
            self._counting.cancel()
            self._counting = None
        if not releases and not successes:
            return
        commands: list[Command] = [("ZREM", lease, token) for lease, token in releases]
        for health, count in successes.items():
            commands.append(("HINCRBY", health, "successes", count))
            commands.append(("PEXPIRE", health, self.keep_rows_ms))
        await self.guard(self.line.batch(commands))

    async def flush(self) -> None:
        """Send everything now (before a report or at shutdown)."""
        if self._flushing is not None:
            await asyncio.wait([self._flushing], timeout=5)
        await self._send()
