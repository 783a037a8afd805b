"""A small Server-Sent Events reader over an aiohttp response body.

Lines are split here, not by `StreamReader.readuntil`: that refuses a line longer than twice
the session's read buffer, and upstream sessions keep a small one (bodygate.READ_BUFFER) so
that waiting requests buffer little. An image stream's line is one base64 image (OpenAI's
`partial_image` events are often 1-3 MB), so a line may be as long as `max_line`; a longer one
is refused with `LineTooLong` without reading further.

A line that reaches `bodygate.UNSIZED_LARGE` takes its request's large-body slot before the
rest is read (`bodygate.hold_event`): while the request waits for one, nothing more is read
and the rest of the line stays in the socket. The client endpoint gives the slot back once it
has written the event.

`quiet`: the longest wait for the stream's next bytes (TimeoutError past it). The reader
bounds it itself, rather than aiohttp's `sock_read`, which would re-arm a timer for every
chunk of every answer on a step that may stream, streamed or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from ..lifecycle import bodygate
from ..lifecycle.deadline import deadline


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str


class LineTooLong(ValueError):
    """An event-stream line over the reader's bound."""


async def iter_lines(
    content: aiohttp.StreamReader, max_line: int, quiet: float | None = None
) -> AsyncIterator[bytes]:
    """The stream's lines without their line break (LF or CRLF); the last one may lack it."""
    buffer = bytearray()
    start = 0  # where the next line begins in `buffer`
    searched = 0  # bytes of `buffer` before this hold no LF
    held = False  # this line holds a large-body slot
    while True:
        end = buffer.find(b"\n", max(start, searched))
        if end < 0:
            del buffer[:start]  # drop the lines handed out, once per read
            start = 0
            if len(buffer) > max_line + 1:  # + 1: the CR of a CRLF may wait for its LF
                raise LineTooLong(f"an event-stream line is longer than {max_line} bytes")
            searched = len(buffer)
            if not held and len(buffer) >= bodygate.UNSIZED_LARGE:
                held = True
                await bodygate.hold_event()  # before reading the rest of it
            # Small steps until a line holds a slot: a step past the threshold stays small,
            # and what is not taken stays in the reader's buffer, not in a second copy here.
            with deadline(quiet):
                chunk = await (content.readany() if held else content.read(bodygate.WAIT_STEP))
            if not chunk:
                if buffer:
                    yield bytes(buffer)
                return
            buffer += chunk
            continue
        if end - start > max_line + (end > start and buffer[end - 1] == 0x0D):
            raise LineTooLong(f"an event-stream line is longer than {max_line} bytes")
        stop = end - 1 if end > start and buffer[end - 1] == 0x0D else end
        if not held and stop - start >= bodygate.UNSIZED_LARGE:
            await bodygate.hold_event()  # it arrived in one read: it holds one all the same
        held = False
        yield bytes(buffer[start:stop])
        start = end + 1


async def iter_events(
    content: aiohttp.StreamReader, max_line: int, quiet: float | None = None
) -> AsyncIterator[SseEvent]:
    """Yield events as they complete (blank-line separated); comments are skipped. An event
    the stream ends inside (no blank line after it) is discarded, as the SSE spec says: a
    stream cut after a data line must not pass for a complete event."""
    event = "message"
    data: list[str] = []
    async for raw in iter_lines(content, max_line, quiet):
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
