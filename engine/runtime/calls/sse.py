"""A small Server-Sent Events reader over an aiohttp response body.

Lines are split here, not by `StreamReader.readuntil`: that refuses a line longer than twice
the session's read buffer, and upstream sessions keep a small one (bodygate.READ_BUFFER) so
that waiting requests buffer little. An image stream's line is one base64 image (OpenAI's
`partial_image` events are often 1-3 MB), so a line may be as long as `max_line`; a longer one
is refused with `LineTooLong` without reading further."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str


class LineTooLong(ValueError):
    """An event-stream line over the reader's bound."""


async def iter_lines(content: aiohttp.StreamReader, max_line: int) -> AsyncIterator[bytes]:
    """The stream's lines without their line break (LF or CRLF); the last one may lack it."""
    buffer = bytearray()
    start = 0  # where the next line begins in `buffer`
    searched = 0  # bytes of `buffer` before this hold no LF
    while True:
        end = buffer.find(b"\n", max(start, searched))
        if end < 0:
            del buffer[:start]  # drop the lines handed out, once per read
            start = 0
            if len(buffer) > max_line + 1:  # + 1: the CR of a CRLF may wait for its LF
                raise LineTooLong(f"an event-stream line is longer than {max_line} bytes")
            searched = len(buffer)
            chunk = await content.readany()
            if not chunk:
                if buffer:
                    yield bytes(buffer)
                return
            buffer += chunk
            continue
        if end - start > max_line + (end > start and buffer[end - 1] == 0x0D):
            raise LineTooLong(f"an event-stream line is longer than {max_line} bytes")
        stop = end - 1 if end > start and buffer[end - 1] == 0x0D else end
        yield bytes(buffer[start:stop])
        start = end + 1


async def iter_events(content: aiohttp.StreamReader, max_line: int) -> AsyncIterator[SseEvent]:
    """Yield events as they complete (blank-line separated); comments are skipped."""
    event = "message"
    data: list[str] = []
    async for raw in iter_lines(content, max_line):
        line = raw.decode("utf-8", errors="replace")
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
    if data:
        yield SseEvent(event, "\n".join(data))
