"""Cut off clients that send a request body too slowly.

aiohttp times out a stalled request line or headers, but not a body: a client that declares
`Content-Length: 1000000000` and sends one byte held its connection (and a file descriptor)
forever. While a request's body is still arriving, a timer checks it every `tick` seconds;
when no byte has come for `idle` seconds, or after `idle` seconds the average rate is under
`min_rate` bytes/s, the body stream is failed with `BodyTimeout`. Whatever is reading it
(JSON, a form, multipart) gets that error, the client a 408, and the connection is closed.

A body that arrived with the headers (most requests) never starts a timer.
"""

from __future__ import annotations

import asyncio

from aiohttp import StreamReader, web


class BodyTimeout(Exception):
    """The client sent its request body too slowly."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyWatch:
    __slots__ = ("_handle", "_last", "_loop", "_seen", "_started", "content", "idle", "min_rate")

    def __init__(self, content: StreamReader, idle: float, min_rate: float) -> None:
        self.content = content
        self.idle = idle
        self.min_rate = min_rate
        self._loop = asyncio.get_running_loop()
        self._started = self._last = self._loop.time()
        self._seen = 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = self._loop.call_later(self._tick(), self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> float:
        return max(0.01, min(1.0, self.idle / 4))

    def _check(self) -> None:
        content = self.content
        if content.is_eof():
            self._handle = None
            return
        now = self._loop.time()
        total = content.total_bytes
        if total != self._seen:
            self._seen, self._last = total, now
        reason = None
        if now - self._last >= self.idle:
            reason = f"no request body bytes for {self.idle:g}s"
        elif self.min_rate and now - self._started >= self.idle:
            rate = total / (now - self._started)
            if rate < self.min_rate:
                reason = f"request body arriving at {rate:.0f} B/s, under {self.min_rate:g} B/s"
        if reason is None:
            self._handle = self._loop.call_later(self._tick(), self._check)
            return
        self._handle = None
        content.set_exception(BodyTimeout(reason))


def watch(request: web.Request, idle: float, min_rate: float) -> BodyWatch | None:
    """Start watching `request`'s body, unless it is already complete (or watching is off)."""
    if idle <= 0 or not request.body_exists or request.content.is_eof():
        return None
    watcher = BodyWatch(request.content, idle, min_rate)
    watcher.start()
    return watcher
