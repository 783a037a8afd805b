"""The step exchanges' HTTP/1.1 client (engine/runtime/calls/wire) against raw TCP servers on
loopback that write exact bytes: connection reuse and its limits, and everything an upstream
may send that a well-behaved server never would."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trustme
from aiohttp import web
from yarl import URL

from engine.runtime.calls.wire import CannotConnect, WireClient, WireError
from engine.runtime.calls.wire.connection import MAX_HEAD, MAX_HEADERS

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.url = URL()


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Server]:
    """A server that calls `handler(reader, writer, index)` for each request it reads (the
    request's head and Content-Length body end up in `server.requests`)."""
    server = Server()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        server.open += 1
        server.most_open = max(server.most_open, server.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                server.requests.append(head + body)
                await handler(reader, writer, len(server.requests) - 1)
                if writer.is_closing():
                    return
        finally:
            server.open -= 1
            writer.close()

    tcp = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    server.url = URL(f"http://127.0.0.1:{port}/v1/images/generations")
    try:
        yield server
    finally:
        tcp.close()


def answer(data: bytes) -> Handler:
    async def handler(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, _i: int) -> None:
        writer.write(data)
        await writer.drain()

    return handler


async def call(
    client: WireClient, url: URL, method: str = "POST", body: bytes | None = b"{}"
) -> tuple[int, bytes]:
    reply = await client.exchange(method, url, {"Content-Type": "application/json"}, body, 5)
    try:
        return reply.status, await reply.content.read()
    finally:
        reply.release()


async def test_a_kept_alive_connection_serves_the_next_request() -> None:
    async with serve(answer(OK)) as server, WireClient(8, 8) as client:
        for _ in range(3):
            assert await call(client, server.url) == (200, b'{"ok":true}')
        assert server.connections == 1
        head = server.requests[0].decode()
        assert head.startswith("POST /v1/images/generations HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{server.url.port}\r\n" in head
        assert "Content-Length: 2\r\n" in head and head.endswith("\r\n\r\n{}")


async def test_connection_close_and_an_answer_ended_by_close_are_not_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"

    async def until_close(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _i: int) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end")
        await w.drain()
        w.close()

    for handler, body in ((answer(closing), b"hi"), (until_close, b"to the end")):
        async with serve(handler) as server, WireClient(8, 8) as client:
            assert await call(client, server.url) == (200, body)
            assert await call(client, server.url) == (200, body)
            assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def then_close(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _i: int) -> None:
        w.write(OK)
        await w.drain()
        await asyncio.sleep(0.02)
        w.close()  # a keep-alive timeout shorter than the gap between two requests

    async with serve(then_close) as server, WireClient(8, 8) as client:
        assert await call(client, server.url) == (200, b'{"ok":true}')
        await asyncio.sleep(0.1)
        assert await call(client, server.url) == (200, b'{"ok":true}')  # a POST: no retry
        assert server.connections == 2


async def test_a_get_is_retried_once_when_a_reused_connection_was_closed() -> None:
    async def drop_second(_r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        if i == 1:
            w.close()  # the close races the reuse: the request got no answer at all
            return
        w.write(OK)
        await w.drain()

    async with serve(drop_second) as server, WireClient(8, 8) as client:
        assert await call(client, server.url, "GET", None) == (200, b'{"ok":true}')
        assert await call(client, server.url, "GET", None) == (200, b'{"ok":true}')
        assert len(server.requests) == 3 and server.connections == 2


async def test_a_post_is_not_sent_twice() -> None:
    async def drop_second(_r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        if i == 1:
            w.close()
            return
        w.write(OK)
        await w.drain()

    async with serve(drop_second) as server, WireClient(8, 8) as client:
        await call(client, server.url)
        with pytest.raises(WireError, match="closed the connection without an answer"):
            await call(client, server.url)
        assert len(server.requests) == 2


async def test_bytes_after_an_answer_never_reach_the_next_exchange() -> None:
    smuggled = OK + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!"
    async with serve(answer(smuggled)) as server, WireClient(8, 8) as client:
        assert await call(client, server.url) == (200, b'{"ok":true}')
        assert await call(client, server.url) == (200, b'{"ok":true}')
        assert server.connections == 2  # the first connection was dropped, not reused


async def test_informational_answers_are_skipped() -> None:
    early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
    async with serve(answer(early)) as server, WireClient(8, 8) as client:
        assert await call(client, server.url) == (200, b'{"ok":true}')
        assert await call(client, server.url) == (200, b'{"ok":true}')


def _key(url: URL) -> tuple[str, str, int]:
    return (url.scheme, url.raw_host or "", url.port or 80)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage\r\n\r\n", "not valid HTTP"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", "longer than 65536"),
        (
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
            f"more than {MAX_HEADERS} headers",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not valid HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n", "unsupported Content-Encoding"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "switched protocols"),
    ],
    ids=["garbage", "long-header", "many-headers", "bad-chunk", "brotli", "upgrade"],
)
async def test_a_broken_answer_is_a_wire_error(data: bytes, message: str) -> None:
    async with serve(answer(data)) as server, WireClient(8, 8) as client:
        with pytest.raises(WireError, match=message):
            await call(client, server.url)
        assert server.connections == 1 and not client._hosts[_key(server.url)].idle


async def test_a_head_that_never_ends_is_cut_at_its_bound() -> None:
    async def trickle(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _i: int) -> None:
        w.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(100_000):
            if w.is_closing():
                return
            w.write(b"X-%d: %s\r\n" % (i, b"v" * 1000))
            try:
                await w.drain()
            except ConnectionError:
                return

    async with serve(trickle) as server, WireClient(8, 8) as client:
        with pytest.raises(WireError, match=f"longer than {MAX_HEAD} bytes|more than"):
            await asyncio.wait_for(call(client, server.url), 10)


async def test_a_body_cut_short_is_an_error_not_a_short_answer() -> None:
    async def short(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _i: int) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await w.drain()
        w.close()

    async with serve(short) as server, WireClient(8, 8) as client:
        with pytest.raises(WireError, match="before the end of its answer"):
            await call(client, server.url)


async def test_gzip_and_deflate_answers_are_inflated() -> None:
    text = b'{"data":[{"b64_json":"' + b"QUJD" * 10_000 + b'"}]}'
    deflated = zlib.compress(text)
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_deflate = raw.compress(text) + raw.flush()
    for encoding, data in (
        ("gzip", gzip.compress(text)),
        ("deflate", deflated),
        ("deflate", raw_deflate),
    ):
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\n"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        async with serve(answer(head.encode() + data)) as server, WireClient(8, 8) as client:
            reply = await client.exchange("GET", server.url, {}, None, 5)
            try:
                assert await reply.content.read() == text
            finally:
                reply.release()
            assert await call(client, server.url, "GET", None) == (200, text)
            assert server.connections == 1


async def test_a_corrupt_or_cut_gzip_answer_is_an_error() -> None:
    data = gzip.compress(b"x" * 100_000)
    for body in (data[:20] + b"\xff" * 50 + data[70:], data[: len(data) // 2]):
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
        async with serve(answer(head.encode() + body)) as server, WireClient(8, 8) as client:
            with pytest.raises(WireError, match="compressed answer"):
                await call(client, server.url)


async def test_a_gzip_bomb_inflates_only_as_fast_as_it_is_read() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB from ~64 KiB
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
    async with serve(answer(head.encode() + bomb)) as server, WireClient(8, 8) as client:
        reply = await client.exchange("GET", server.url, {}, None, 5)
        tracemalloc.start()
        try:
            total = 0
            for _ in range(20):  # read 20 small pieces, then give up as a capped reader does
                await asyncio.sleep(0.01)  # time for the socket to deliver the rest
                total += len(await reply.content.read(64 * 1024))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            reply.release()
        assert total > 0
        assert peak < 4 * 1024 * 1024, peak  # not the 64 MiB the whole bomb inflates to


async def test_a_line_break_in_a_header_is_refused_before_sending() -> None:
    async with serve(answer(OK)) as server, WireClient(8, 8) as client:
        for value in ("a\r\nX-Injected: 1", "a\nb", "a\rb"):
            with pytest.raises(WireError, match="line break"):
                await client.exchange("GET", server.url, {"X-Prompt": value}, None, 5)
        assert server.requests == []


async def test_a_refused_connection_says_why() -> None:
    async with serve(answer(OK)) as server:
        url = server.url
    async with WireClient(8, 8) as client:
        with pytest.raises(CannotConnect, match="refused"):
            await call(client, url)


async def test_the_per_host_limit_holds_exchanges_until_one_is_released() -> None:
    async def slow(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _i: int) -> None:
        await asyncio.sleep(0.05)
        w.write(OK)
        await w.drain()

    async with serve(slow) as server, WireClient(8, 1) as client:
        results = await asyncio.gather(*(call(client, server.url) for _ in range(4)))
        assert results == [(200, b'{"ok":true}')] * 4
        assert server.most_open == 1 and server.connections == 1


async def test_an_exchange_cancelled_midway_closes_its_connection() -> None:
    async def stall(_r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        if i == 0:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
            await w.drain()
            await asyncio.sleep(0.5)
            return
        w.write(OK)
        await w.drain()

    async with serve(stall) as server, WireClient(8, 1) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call(client, server.url), 0.1)
        assert await call(client, server.url) == (200, b'{"ok":true}')  # its slot came back
        assert server.connections == 2


async def test_a_body_that_came_with_its_head_is_bytes_and_a_longer_one_a_stream() -> None:
    long_body = b"x" * 300_000

    async def in_parts(_r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        if i == 0:
            w.write(OK)  # one write: head and body in one read
        else:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(long_body))
            for start in range(0, len(long_body), 100_000):
                await asyncio.sleep(0.01)
                w.write(long_body[start : start + 100_000])
        await w.drain()

    async with serve(in_parts) as server, WireClient(8, 8) as client:
        small = await client.exchange("GET", server.url, {}, None, 5)
        assert small.body == b'{"ok":true}'
        small.release()
        long = await client.exchange("GET", server.url, {}, None, 5)
        try:
            assert long.body is None
            assert await long.content.read() == long_body
        finally:
            long.release()
        assert server.connections == 1  # both read to the end: the connection was reused


async def test_https_upstreams_are_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(served)  # for the name, not for 127.0.0.1
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"host": request.headers["Host"]})

    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=served).start()
    port = runner.addresses[0][1]
    by_name = URL(f"https://localhost:{port}/hello")
    try:
        async with WireClient(8, 8) as client:  # the system's CAs: this one is unknown
            with pytest.raises(CannotConnect, match="CERTIFICATE_VERIFY_FAILED"):
                await call(client, by_name, "GET", None)
        with ca.cert_pem.tempfile() as ca_file:
            monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # read when the client makes its context
            async with WireClient(8, 8) as client:
                expected = b'{"host": "localhost:%d"}' % port
                assert await call(client, by_name, "GET", None) == (200, expected)
                with pytest.raises(CannotConnect, match="CERTIFICATE_VERIFY_FAILED"):
                    await call(client, URL(f"https://127.0.0.1:{port}/hello"), "GET", None)
    finally:
        await runner.cleanup()
