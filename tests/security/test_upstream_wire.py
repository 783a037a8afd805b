"""An upstream that misbehaves on the wire: the gateway answers its client with a clean
OpenAI-shaped error (never a traceback, a hang or the key), bounded by the step timeout, and
the next request through the same gateway still gets its own answer.

Providers are untrusted: everything one sends is guarded as strictly as client input. The
upstream here is a raw TCP server (tests/security/rawwire.py) writing exact bytes, the client
the official SDK. Connection reuse (desync, keep-alive, close) is in
test_upstream_wire_connections.py; payload cases (gzip, redirects, size cap, event streams) in
test_upstream_wire_payload.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.security.rawwire import (
    BOUND,
    JSON,
    OK,
    PNG,
    Request,
    bad_then_ok,
    body_for,
    generate,
    refused,
    replies,
    response,
    wire,
)

SIZE = len(body_for(PNG))


# 1. Not HTTP/1.1 at all.


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n", id="no-status-code"),
        pytest.param(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", id="status-2000"),
        pytest.param(b"HTTP/1.1 200\x00OK\r\nContent-Length: 0\r\n\r\n", id="nul-in-line"),
        pytest.param(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", id="garbage"),
        pytest.param(body_for(PNG), id="http-0.9"),  # the body alone: no status, no headers
        pytest.param(b"HTTP/2 200\r\n" + OK.split(b"\r\n", 1)[1], id="http-2-text"),
        pytest.param(b"http/1.1 200 OK\r\n" + OK.split(b"\r\n", 1)[1], id="lower-case-name"),
    ],
)
async def test_not_an_http_answer(tmp_path: Path, bad: bytes) -> None:
    await bad_then_ok(tmp_path, bad, 502)


# 2. Header lines and header blocks.


async def test_a_header_line_over_64_kib_is_refused(tmp_path: Path) -> None:
    big = response(body_for(PNG), headers=(JSON, "X-Big: " + "b" * 70_000))
    await bad_then_ok(tmp_path, big, 502)


async def test_a_bare_cr_in_a_header_value_is_refused(tmp_path: Path) -> None:
    """A lone CR is a line end to some parsers and not to others (response splitting)."""
    await bad_then_ok(tmp_path, response(body_for(PNG), headers=(JSON, "X-A: a\rb")), 502)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200\r\n" + OK.split(b"\r\n", 1)[1], id="no-reason-phrase"),
        pytest.param(b"\r\n" + OK, id="an-empty-line-first"),
        pytest.param(OK.replace(b"\r\n\r\n", b"\r\nX-A: caf\xe9\r\n\r\n", 1), id="latin-1"),
        pytest.param(OK.replace(b"\r\n\r\n", "\r\nX-A: café\r\n\r\n".encode(), 1), id="utf-8"),
    ],
)
async def test_lenient_where_http_allows(tmp_path: Path, answer: bytes) -> None:
    """Valid or tolerated HTTP/1.1 (RFC 9112): an empty reason phrase, an empty line before
    the status line, header values with bytes over 0x7f."""
    async with wire(tmp_path, replies(answer)) as (gw, _):
        assert await generate(gw) == PNG


async def test_a_20_kb_signed_header_is_accepted(tmp_path: Path) -> None:
    signed = response(body_for(PNG), headers=(JSON, "X-Sig: " + "s" * 20_000))
    async with wire(tmp_path, replies(signed)) as (gw, _):
        assert await generate(gw) == PNG


async def test_ten_thousand_small_headers_are_refused(tmp_path: Path) -> None:
    """No provider sends thousands of headers; each costs parsing and memory, so the count
    is bounded (aiohttp: 128) and the answer refused."""
    many = tuple(f"X-H{i}: v" for i in range(10_000))
    answer = response(body_for(PNG), headers=(JSON, *many))
    await bad_then_ok(tmp_path, answer, 502)


async def test_headers_that_never_end_are_refused_at_a_bound(tmp_path: Path) -> None:
    """A header block trickled fast and forever (16 lines of 1 KB every 5 ms): refused once
    it passes the header bound (aiohttp: 128 headers), long before the step timeout, and
    never buffered without bound."""

    async def trickle(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        if n > 0:
            writer.write(OK)
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        for i in range(int(BOUND * 200)):  # longer than any bound
            writer.write(b"".join(f"X-T{i}-{j}: {'t' * 1000}\r\n".encode() for j in range(16)))
            await writer.drain()
            await asyncio.sleep(0.005)
        return False

    async with wire(tmp_path, trickle) as (gw, _):
        await refused(gw, 502)
        assert await generate(gw) == PNG


async def test_headers_trickled_slowly_time_out(tmp_path: Path) -> None:
    """A small header line every 100 ms stays under every size bound: the step timeout
    (not the client's, not the route's) ends the exchange."""

    async def trickle(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        if n > 0:
            writer.write(OK)
            return True
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(int(BOUND * 10)):
            writer.write(f"X-T{i}: t\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.1)
        return False

    async with wire(tmp_path, trickle) as (gw, _):
        await refused(gw, 504, "timed out after 1s")
        assert await generate(gw) == PNG


# 3. Content-Length and a body that is not all there.


async def test_a_body_shorter_than_its_length_then_close(tmp_path: Path) -> None:
    short = response(body_for(PNG), length=SIZE + 100)
    await bad_then_ok(tmp_path, short, 502)


async def test_a_body_shorter_than_its_length_on_an_open_connection(tmp_path: Path) -> None:
    async def stall(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        if n > 0:
            writer.write(OK)
            return True
        writer.write(response(body_for(PNG), length=SIZE + 100))
        await asyncio.sleep(BOUND * 2)  # open, silent: only a timeout ends it
        return False

    async with wire(tmp_path, stall) as (gw, _):
        await refused(gw, 504, "timed out")
        assert await generate(gw) == PNG


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(f"Content-Length: 10\r\nContent-Length: {SIZE}", id="two-lengths"),
        pytest.param("Content-Length: nope", id="not-a-number"),
        pytest.param("Content-Length: -1", id="negative"),
        pytest.param(f"Content-Length: +{SIZE}", id="plus-sign"),
        pytest.param(f"Content-Length: {SIZE}\r\nTransfer-Encoding: chunked", id="and-chunked"),
    ],
)
async def test_an_ambiguous_length_is_refused(tmp_path: Path, head: str) -> None:
    """Where the body ends must be certain (the request-smuggling class, on answers): an
    answer whose framing headers disagree or do not parse is refused, never guessed at."""
    bad = f"HTTP/1.1 200 OK\r\n{JSON}\r\n{head}\r\n\r\n".encode()
    await bad_then_ok(tmp_path, bad + body_for(PNG), 502)


# 4. Chunked encoding.


def _chunked(*chunks: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\n{JSON}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    return head + b"".join(chunks)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_valid_chunked_answer(tmp_path: Path) -> None:
    """Upper-case hex, a chunk extension and a trailer are all valid HTTP/1.1."""
    data = body_for(PNG)
    extended = b"%X;name=value\r\n%s\r\n" % (len(data) - 10, data[10:])
    answer = _chunked(_chunk(data[:10]), extended, b"0\r\nX-Trailer: t\r\n\r\n")
    async with wire(tmp_path, replies(answer)) as (gw, _):
        assert await generate(gw) == PNG
        assert await generate(gw) == PNG


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"zz\r\n{}\r\n0\r\n\r\n", id="bad-hex"),
        pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", id="negative"),
        pytest.param(b"5\r\nhelloXX0\r\n\r\n", id="missing-crlf"),
        pytest.param(b"ffffffffffffffffffff\r\nx\r\n", id="size-overflow"),
    ],
)
async def test_bad_chunked_encoding(tmp_path: Path, tail: bytes) -> None:
    await bad_then_ok(tmp_path, _chunked(tail), 502)


async def test_a_chunked_body_that_never_ends(tmp_path: Path) -> None:
    async def forever(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        if n > 0:
            writer.write(OK)
            return True
        writer.write(_chunked(_chunk(b'{"created": 1, "data": [')))
        for _i in range(int(BOUND * 100)):
            writer.write(_chunk(b" " * 100))
            await writer.drain()
            await asyncio.sleep(0.01)
        return False

    async with wire(tmp_path, forever) as (gw, _):
        await refused(gw, 504, "timed out")
        assert await generate(gw) == PNG


# A success status that carries no image.


NO_IMAGE = "not a recognised image"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", NO_IMAGE, id="204"),
        # (a 3xx nobody followed fails before its bytes are looked at)
        pytest.param(b"HTTP/1.1 304 Not Modified\r\n\r\n", "HTTP 304", id="304"),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n" + OK,
            "switched protocols",  # refused by the step client before any body
            id="unsolicited-101",
        ),
        pytest.param(response(b"", headers=("Content-Type: image/png",)), NO_IMAGE, id="empty-png"),
        pytest.param(
            response(b"<html>busy</html>", headers=("Content-Type: image/png",)),
            NO_IMAGE,
            id="html-as-png",
        ),
    ],
)
async def test_a_success_status_without_an_image_is_no_image(
    tmp_path: Path, answer: bytes, message: str
) -> None:
    """The gateway once answered these with a 200 and `{"b64_json": ""}` (or the base64 of
    an HTML page): an upstream answer's own bytes went to the client unchecked."""
    await bad_then_ok(tmp_path, answer, 502, message)
