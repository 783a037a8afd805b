"""Connection reuse with an upstream that misbehaves: bytes after a complete answer
(response desync), idle keep-alive connections the upstream closes, `Connection: close` and
HTTP/1.0 answers on sockets left open, resets. The next request through the gateway must get
its own answer, from its own request. See test_upstream_wire.py for the setting."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.security.rawwire import (
    BOUND,
    JSON,
    KEY,
    OK,
    PNG,
    PNG2,
    Request,
    body_for,
    generate,
    refused,
    replies,
    response,
    wire,
)

OK2 = response(body_for(PNG2))


# Response desync: bytes after a complete answer on a keep-alive connection.


@pytest.mark.parametrize(
    ("extra", "late"),
    [
        pytest.param(OK2, False, id="a-second-answer-in-the-same-write"),
        pytest.param(
            OK2,
            True,
            id="a-second-answer-while-pooled",
        ),
        pytest.param(
            b"garbage after the body\r\n\r\n",
            False,
            id="garbage-in-the-same-write",
        ),
        pytest.param(b"garbage after the body\r\n\r\n", True, id="garbage-while-pooled"),
    ],
)
async def test_bytes_after_a_complete_answer_never_reach_the_next_request(
    tmp_path: Path, extra: bytes, late: bool
) -> None:
    """The first answer carries a bogus second answer (PNG2) or garbage behind it, in the same
    write or 300 ms later (the connection idle in the gateway's pool by then); the next
    requests must each get their own answer (PNG, the only one the upstream sends them),
    never the leftover."""

    async def smuggle(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        if n > 0:
            writer.write(OK)
            return True
        writer.write(OK if late else OK + extra)
        await writer.drain()
        if late:
            await asyncio.sleep(0.3)
            writer.write(extra)
            await writer.drain()
        return True

    async with wire(tmp_path, smuggle) as (gw, upstream):
        assert await generate(gw) == PNG
        await asyncio.sleep(0.5)  # the leftover is in the gateway's socket by now
        for _ in range(3):
            assert await generate(gw) == PNG
        assert len(upstream.requests) == 4  # each answer came from its own request


# Connections the upstream closes.


async def test_an_upstream_that_closes_idle_keep_alive_connections(tmp_path: Path) -> None:
    """Keep-alive answers, then the socket closes ~50 ms later: the next request (after the
    close) must not fail on the dead pooled connection."""

    async def close_soon(_: int, __: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        await asyncio.sleep(0.05)
        return False

    async with wire(tmp_path, close_soon) as (gw, upstream):
        for _ in range(3):
            assert await generate(gw) == PNG
            await asyncio.sleep(0.2)
        assert upstream.connections == 3


async def test_connection_close_answers(tmp_path: Path) -> None:
    answer = response(body_for(PNG), headers=(JSON, "Connection: close"))
    async with wire(tmp_path, replies(answer, keep=False)) as (gw, upstream):
        assert await generate(gw) == PNG
        assert await generate(gw) == PNG
        assert upstream.connections == 2


# A body ended by close (no length, not chunked).


async def test_a_body_ended_by_close(tmp_path: Path) -> None:
    answer = f"HTTP/1.1 200 OK\r\n{JSON}\r\n\r\n".encode() + body_for(PNG)
    async with wire(tmp_path, replies(answer, keep=False)) as (gw, _):
        assert await generate(gw) == PNG
        assert await generate(gw) == PNG


# Informational answers before the real one.


async def test_informational_answers_before_the_answer(tmp_path: Path) -> None:
    early = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
    )
    async with wire(tmp_path, replies(early + OK)) as (gw, _):
        assert await generate(gw) == PNG
        assert await generate(gw) == PNG


async def test_a_pooled_connection_closed_as_the_request_arrives(tmp_path: Path) -> None:
    """The race of an idle close: the upstream takes the next request on the pooled
    connection and closes it unanswered. A clean 502 (a POST may not be resent: the upstream
    may have started on it), and the request after that gets a fresh connection."""

    async def drop_second(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        if n == 1:
            return False
        writer.write(OK)
        await writer.drain()
        return True

    async with wire(tmp_path, drop_second) as (gw, upstream):
        assert await generate(gw) == PNG
        await refused(gw, 502)
        assert await generate(gw) == PNG
        assert len(upstream.requests) == 3


@pytest.mark.parametrize("abort", [False, True], ids=["closed", "reset"])
async def test_a_connection_dropped_before_any_answer(tmp_path: Path, abort: bool) -> None:
    async def drop(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        if n == 0:
            if abort:
                writer.transport.abort()  # RST, not FIN
            return False
        writer.write(OK)
        return True

    async with wire(tmp_path, drop) as (gw, _):
        await refused(gw, 502)
        assert await generate(gw) == PNG


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(response(body_for(PNG), headers=(JSON, "Connection: close")), id="close"),
        pytest.param(b"HTTP/1.0 200 OK\r\n" + OK.split(b"\r\n", 1)[1], id="http-1.0"),
    ],
)
async def test_an_answer_that_ends_the_connection_is_not_reused(
    tmp_path: Path, answer: bytes
) -> None:
    """`Connection: close` and HTTP/1.0 (no keep-alive asked) end the connection whether or
    not the upstream closes its socket: here it keeps it open and never reads again, so a
    reused connection would hang the next request into a timeout."""

    async def linger(_: int, __: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(BOUND * 2)
        return False

    async with wire(tmp_path, linger) as (gw, upstream):
        assert await generate(gw) == PNG
        assert await generate(gw) == PNG
        assert upstream.connections == 2


async def test_the_request_on_the_wire_and_its_reuse(tmp_path: Path) -> None:
    """What the upstream reads: one well-formed HTTP/1.1 request with its Host, its exact
    length and the key, and keep-alive: three requests in a row share one connection."""
    async with wire(tmp_path, replies(OK)) as (gw, upstream):
        for _ in range(3):
            assert await generate(gw) == PNG
    assert upstream.connections == 1
    for request in upstream.requests:
        line = request.head.split(b"\r\n", 1)[0]
        assert line == b"POST /v1/images/generations HTTP/1.1"
        assert request.header("Host") == upstream.base.removeprefix("http://")
        assert request.header("Authorization") == f"Bearer {KEY}"
        assert request.header("Content-Length") == str(len(request.body))
        assert request.header("Transfer-Encoding") is None
        assert json.loads(request.body)["prompt"] == "a fox"
