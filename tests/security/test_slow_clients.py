"""Slow clients (issue 12, item 3): a client that declares a big body and stalls, or trickles
it, is cut off with a 408 and its connection closed; header stalls are aiohttp's to close.
Raw sockets: no HTTP client library would send these."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.gateway import REPO, Gateway, run_gateway

ENV = {"PIXGATE_BODY_TIMEOUT": "0.5", "PIXGATE_BODY_MIN_RATE": "2000"}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(REPO, tmp_path / "files", ENV) as gw:
        yield gw


async def connect(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = gw.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


def head(path: str, content_type: str, length: int) -> bytes:
    return (
        f"POST /v1{path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, object], bytes]:
    """The status, the JSON error body, and whatever follows until the server closes."""
    async with asyncio.timeout(15):
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        payload = await reader.readexactly(int(headers["content-length"]))
        try:
            rest = await reader.read()  # b"" once the server has closed the connection
        except ConnectionResetError:
            rest = b""  # closed while this client was still sending: a reset instead of a FIN
    return int(status_line.split()[1]), json.loads(payload), rest


STALLS = [
    ("/images/generations", "application/json"),
    ("/images/edits", "multipart/form-data; boundary=b"),
    ("/images/edits", "application/x-www-form-urlencoded"),
    ("/chat/completions", "application/json"),
]


async def test_a_stalled_body_is_a_408_and_the_connection_closes(gateway: Gateway) -> None:
    for path, content_type in STALLS:
        reader, writer = await connect(gateway)
        try:
            writer.write(head(path, content_type, 10_000_000) + b"{")
            await writer.drain()
            status, payload, rest = await answer(reader)
        finally:
            writer.close()
        assert status == 408, (path, content_type)
        assert payload["error"]["code"] == "request_timeout"  # type: ignore[index]
        assert rest == b""  # closed by the server: its file descriptor is free


async def test_a_trickled_body_is_cut_by_the_minimum_rate(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A byte every 0.1 s never trips the idle timeout; the rate rule catches it, and the
    body it cut off is no ERROR in the log."""
    reader, writer = await connect(gateway)
    try:
        writer.write(head("/images/generations", "application/json", 10_000))

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.1)

        sender = asyncio.create_task(trickle())
        try:
            status, payload, _ = await answer(reader)
        finally:
            sender.cancel()
    finally:
        writer.close()
    assert status == 408
    assert "B/s" in str(payload["error"])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_slow_but_steady_body_is_served(gateway: Gateway) -> None:
    """The control: a body that arrives in pieces, fast enough, is an ordinary request."""
    body = json.dumps({"model": "demo", "prompt": "a fox", "size": "64x64"}).encode()
    reader, writer = await connect(gateway)
    try:
        writer.write(head("/images/generations", "application/json", len(body)))
        for i in range(0, len(body), 8):
            writer.write(body[i : i + 8])
            await writer.drain()
            await asyncio.sleep(0.001)
        async with asyncio.timeout(15):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.split()[1] == b"200", status_line
