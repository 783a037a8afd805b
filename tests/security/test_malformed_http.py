"""A request aiohttp cannot parse gets an OpenAI-shaped JSON error, not aiohttp's plain text
(issue 12): over a raw socket, bad request lines, methods, versions and headers each get a
4xx with `{"error": {...}}` and `Server: pixgate`, and the connection is closed after it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.gateway import Gateway, run_gateway

CASES = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"G\x00T /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


async def _exchange(gw: Gateway, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()  # the gateway closes the connection after the error
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


async def test_unparseable_requests_get_openai_errors(tmp_path: Path) -> None:
    async with run_gateway(Path(__file__).parents[2], tmp_path / "f") as gw:
        for raw in CASES:
            status, headers, body = await _exchange(gw, raw)
            assert 400 <= status < 500, raw[:40]
            assert headers["content-type"].startswith("application/json"), raw[:40]
            assert headers["server"] == "pixgate"
            error = json.loads(body)["error"]
            assert error["type"] == "invalid_request_error"
            assert error["code"] == "malformed_request"
            assert error["message"].startswith("malformed HTTP request (")
