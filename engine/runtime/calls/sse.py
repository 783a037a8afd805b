"""A small Server-Sent Events reader over an aiohttp response body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str


async def iter_events(
    content: aiohttp.StreamReader, max_line: int = 16 * 1024 * 1024
) -> AsyncIterator[SseEvent]:
    """Yield events as they complete (blank-line separated); comments are skipped."""
    event = "message"
    data: list[str] = []
    while True:
        raw = await content.readuntil(b"\n") if not content.at_eof() else b""
        if not raw:
            if data:
                yield SseEvent(event, "\n".join(data))
            return
        if len(raw) > max_line:
            raise ValueError("SSE line too long")
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
