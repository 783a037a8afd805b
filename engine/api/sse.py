"""Server-Sent Events to the client, with keep-alive comments while the upstream works."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from .context import context

T = TypeVar("T")
KEEPALIVE_SECONDS = 5.0


class ClientGone(Exception):
    """The client closed the connection; the work for it was cancelled."""


class SseStream:
    def __init__(self, request: web.Request, *, keepalive: float = KEEPALIVE_SECONDS) -> None:
        self.request = request
        self.keepalive = keepalive
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # proxies must not buffer the stream
            }
        )

    async def start(self, headers: dict[str, str] | None = None) -> None:
        self.response.headers.update(headers or {})
        self.response.headers["x-request-id"] = context(self.request).id
        await self.response.prepare(self.request)

    async def send(self, data: Any, event: str | None = None) -> None:
        """One event. Built as bytes in one join: an image event is megabytes, and each text
        round trip (decode, format, encode) was another copy while it holds its slot."""
        if isinstance(data, str):
            payload = data.encode()
        else:
            payload = data if isinstance(data, bytes) else orjson.dumps(data)
        head = f"event: {event}\ndata: " if event else "data: "
        await self._write(b"".join((head.encode(), payload, b"\n\n")))

    async def comment(self, text: str = "keep-alive") -> None:
        await self._write(f": {text}\n\n".encode())

    async def done(self) -> None:
        await self._write(b"data: [DONE]\n\n")
        with contextlib.suppress(ConnectionError):
            await self.response.write_eof()

    async def _write(self, frame: bytes) -> None:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ClientGone()
        try:
            await self.response.write(frame)
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone() from exc

    async def while_working(self, work: Awaitable[T]) -> T:
        """Await `work`, sending a keep-alive comment every few seconds. If the client goes
        away, the work is cancelled (its upstream calls with it) and ClientGone is raised."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.keepalive)
                if done:
                    return task.result()
                await self.comment()
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
