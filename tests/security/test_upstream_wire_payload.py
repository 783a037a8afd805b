"""An upstream's payload on the wire: gzip (valid, a bomb, corrupt), redirects (a loop,
another origin, another scheme), an answer over the body cap, event streams that drop or go
quiet. Each ends in a clean OpenAI-shaped error or the right image, bounded, with the key
nowhere it should not be. Framing cases are in test_upstream_wire.py."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import re
import zlib
from functools import cache
from pathlib import Path

import openai
import pytest

from engine.runtime.calls import upstream as upstream_module
from tests.security.rawwire import (
    BOUND,
    JSON,
    KEY,
    OK,
    PNG,
    Request,
    body_for,
    client,
    generate,
    raw_upstream,
    refused,
    replies,
    response,
    wire,
)

# 10. gzip.


@cache
def _bomb() -> bytes:
    """200 MB of zeros, gzip-compressed to about 200 KB (built in 1 MB steps)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(200)) + packer.flush()


def _reset_peak_rss() -> int:
    """Set the process's peak RSS (VmHWM) to its current RSS; that, in KiB."""
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    return _peak_rss_kib()


def _peak_rss_kib() -> int:
    status = Path("/proc/self/status").read_text(encoding="ascii")
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


async def test_a_valid_gzip_answer(tmp_path: Path) -> None:
    packed = gzip.compress(body_for(PNG))
    answer = response(packed, headers=(JSON, "Content-Encoding: gzip"))
    async with wire(tmp_path, replies(answer)) as (gw, _):
        assert await generate(gw) == PNG
        assert await generate(gw) == PNG


async def test_a_gzip_bomb_is_refused_within_the_body_cap(tmp_path: Path) -> None:
    """200 MB inflated from 200 KB: refused as too large once past the 64 MiB cap, and the
    process's peak memory (reset just before: the gateway runs in this process) grows by
    about the cap, not by the 200 MB."""
    bomb = response(_bomb(), headers=(JSON, "Content-Encoding: gzip"))
    async with wire(tmp_path, replies(bomb, OK), step_timeout=5) as (gw, _):  # slow machines
        before = _reset_peak_rss()
        await refused(gw, 502, "too large")
        grown_mib = (_peak_rss_kib() - before) / 1024
        assert grown_mib < 150, f"peak RSS grew by {grown_mib:.0f} MiB"
        assert await generate(gw) == PNG


@pytest.mark.parametrize(
    "packed",
    [
        pytest.param(b"\x1f\x8b\x08\x00" + b"\xff" * 200, id="bad-deflate"),
        pytest.param(gzip.compress(body_for(PNG))[:-30], id="truncated"),
        pytest.param(b"not gzip at all", id="not-gzip"),
        pytest.param(
            gzip.compress(body_for(PNG))[:-8],
            id="no-trailer",
        ),
        pytest.param(gzip.compress(body_for(PNG))[:-8] + b"\0" * 8, id="bad-crc"),
    ],
)
async def test_a_corrupt_gzip_answer(tmp_path: Path, packed: bytes) -> None:
    """Refused, whatever part is broken: a stream cut short is a body cut short."""
    answer = response(packed, headers=(JSON, "Content-Encoding: gzip"))
    async with wire(tmp_path, replies(answer, OK)) as (gw, _):
        await refused(gw, 502)
        assert await generate(gw) == PNG


# 11. Redirects.


def _redirect(location: str, status: str = "302 Found") -> bytes:
    return response(b"", status=status, headers=(f"Location: {location}",))


async def test_a_redirect_loop_ends(tmp_path: Path) -> None:
    async with wire(tmp_path, replies(_redirect("/v1/images/generations"))) as (gw, upstream):
        assert "redirect" in (await refused(gw, 502)).lower()
        assert 10 <= len(upstream.requests) <= 12  # MAX_REDIRECTS (10) followed, then refused


@pytest.mark.parametrize("status", ["302 Found", "303 See Other", "307 Temporary Redirect"])
async def test_a_redirect_to_another_origin_carries_no_key(tmp_path: Path, status: str) -> None:
    """The key (Authorization: Bearer) goes to base_url's origin only, never to where an
    upstream redirects; nor does the signed query of the target reach an error message."""
    async with raw_upstream(replies(OK)) as (other, elsewhere):
        target = f"{other}/v1/landing?X-Signature=sig-secret-123"
        async with wire(tmp_path, replies(_redirect(target, status))) as (gw, upstream):
            assert await generate(gw) == PNG
            assert upstream.requests[0].header("Authorization") == f"Bearer {KEY}"
    assert len(elsewhere.requests) == 1
    assert elsewhere.requests[0].header("Authorization") is None
    assert KEY.encode() not in elsewhere.requests[0].head + elsewhere.requests[0].body


async def test_a_redirect_to_another_origin_hides_its_query_in_errors(tmp_path: Path) -> None:
    broken = b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"
    async with raw_upstream(replies(broken)) as (other, _):
        target = f"{other}/v1/landing?X-Signature=sig-secret-123"
        async with wire(tmp_path, replies(_redirect(target, "307 Temporary Redirect"))) as (gw, _):
            message = await refused(gw, 502)
    assert "sig-secret-123" not in message


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/x", "http://[::1"],
)
async def test_a_redirect_to_another_scheme_is_refused(tmp_path: Path, location: str) -> None:
    async with wire(tmp_path, replies(_redirect(location), OK)) as (gw, _):
        message = await refused(gw, 502)
        assert "redirect" in message.lower() and "passwd" not in message
        assert await generate(gw) == PNG


@pytest.mark.parametrize(
    "status", ["300 Multiple Choices", "302 Found", "305 Use Proxy", "399 Odd Redirect"]
)
async def test_a_3xx_that_is_not_followed_is_a_failure(tmp_path: Path, status: str) -> None:
    """A 3xx the client does not follow (no Location, or not a redirect status) is not the
    answer the step asked for, whatever its body says: an upstream error, never an image."""
    answer = response(body_for(PNG), status=status)
    async with wire(tmp_path, replies(answer, OK)) as (gw, _):
        assert f"HTTP {status[:3]}" in await refused(gw, 502)
        assert await generate(gw) == PNG


# 12. The body cap.


async def test_a_length_over_the_cap_is_refused_without_reading(tmp_path: Path) -> None:
    """Content-Length says 100 MB; 1 MB comes and the connection stays open: the gateway
    refuses on the header alone (waiting for the rest would end in a timeout instead)."""

    async def huge(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        if n > 0:
            writer.write(OK)
            return True
        writer.write(response(b"x" * (1 << 20), headers=(JSON,), length=100_000_000))
        await writer.drain()
        await asyncio.sleep(BOUND * 2)
        return False

    async with wire(tmp_path, huge) as (gw, _):
        await refused(gw, 502, "too large (100000000 bytes)")
        assert await generate(gw) == PNG


async def test_a_chunked_answer_over_the_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream_module, "MAX_BODY", 1 << 20)
    piece = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(40))
    head = f"HTTP/1.1 200 OK\r\n{JSON}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    async with wire(tmp_path, replies(head + chunks + b"0\r\n\r\n", OK)) as (gw, _):
        await refused(gw, 502, "too large")
        assert await generate(gw) == PNG


# 13. Event streams.


def _event(kind: str, **fields: object) -> bytes:
    data = {"type": kind, "b64_json": base64.b64encode(PNG).decode(), **fields}
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"  # ended by close
PARTIAL = _event("image_generation.partial_image", partial_image_index=0)
USAGE = {"total_tokens": 2, "input_tokens": 1, "output_tokens": 1}
COMPLETED = _event("image_generation.completed", usage=USAGE)


async def _stream_events(gw: object) -> tuple[list[str], Exception | None]:
    seen: list[str] = []
    async with client(gw) as sdk, asyncio.timeout(BOUND):  # type: ignore[arg-type]
        try:
            stream = await sdk.images.generate(
                model="m", prompt="a fox", stream=True, partial_images=1
            )
            async for event in stream:
                seen.append(event.type)
        except openai.APIError as exc:
            return seen, exc
    return seen, None


async def test_a_complete_event_stream(tmp_path: Path) -> None:
    async with wire(tmp_path, replies(SSE_HEAD + PARTIAL + COMPLETED, keep=False)) as (gw, _):
        seen, error = await _stream_events(gw)
    assert error is None
    assert seen == ["image_generation.partial_image", "image_generation.completed"]


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(len(COMPLETED) // 2, id="inside-the-data-line"),
        pytest.param(len(COMPLETED) - 1, id="before-the-blank-line"),
    ],
)
async def test_an_event_stream_that_drops_mid_event(tmp_path: Path, cut: int) -> None:
    """A stream that closes inside the last event: the preview came, then an error event
    (an incomplete event is never an image); the gateway goes on serving."""
    dropped = SSE_HEAD + PARTIAL + COMPLETED[:cut]
    async with wire(tmp_path, replies(dropped, keep=False)) as (gw, _):
        for _ in range(2):
            seen, error = await _stream_events(gw)
            assert seen == ["image_generation.partial_image"]
            assert isinstance(error, openai.APIError), error
            assert KEY not in str(error)


async def test_an_event_stream_that_goes_quiet(tmp_path: Path) -> None:
    """One preview, then silence on an open connection: the step timeout (the longest quiet
    a stream may have) ends it with a timeout error event."""

    async def quiet(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(SSE_HEAD + PARTIAL)
        await writer.drain()
        await asyncio.sleep(BOUND * 2)
        return False

    async with wire(tmp_path, quiet) as (gw, _):
        seen, error = await _stream_events(gw)
    assert seen == ["image_generation.partial_image"]
    assert isinstance(error, openai.APIError) and "timed out after 1s" in error.message, error
