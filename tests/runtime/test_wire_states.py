"""The step client's connection state machine at its edges: what arrives after an answer,
a connection that ends once its whole answer is in, name resolution failing. Servers and
helpers come from test_wire_client.py."""

from __future__ import annotations

import asyncio
import gzip
import socket
from typing import Any

import pytest
from yarl import URL

from engine.runtime.calls.wire import CannotConnect, WireClient
from engine.runtime.calls.wire.connection import Connection
from engine.runtime.calls.wire.pool import HostPool
from tests.runtime.test_wire_client import OK, answer, call, serve


async def test_the_start_of_a_second_answer_never_reaches_the_next_exchange() -> None:
    """An answer followed by a few bytes of another one (too few for the parser to fail on):
    the connection is closed, not pooled with a parser holding those bytes for the next
    request's answer."""
    async with serve(answer(OK + b"HTTP/1.1 2")) as server, WireClient(8, 8) as client:
        assert await call(client, server.url) == (200, b'{"ok":true}')
        assert await call(client, server.url) == (200, b'{"ok":true}')
        assert server.connections == 2


class _Transport(asyncio.Transport):
    """Records what the connection does to it; the test plays the network."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.closing = False

    def write(self, data: Any) -> None:
        pass

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


async def test_a_whole_gzip_answer_survives_its_connection_ending_while_paused() -> None:
    """All of a gzip answer arrived; its reader holds the inflater back (flow control), and
    then the connection ends (a reset after `Connection: close`, which a TLS transport
    reports even while the reader is paused): the answer is whole, and it reads in full."""
    body = bytes(2 << 20)  # inflates in several pieces
    packed = gzip.compress(body)
    conn = Connection(asyncio.get_running_loop(), HostPool(0))
    transport = _Transport()
    conn.connection_made(transport)
    waiter = conn.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", URL("https://h/"))
    head = (
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n"
        f"Content-Length: {len(packed)}\r\n\r\n"
    )
    conn.data_received(head.encode() + packed)
    got = await asyncio.wait_for(waiter, 1)
    assert transport.paused  # the reader holds the rest of the inflated body back
    conn.connection_lost(ConnectionResetError())
    try:
        assert await asyncio.wait_for(got.content.read(), 5) == body
    finally:
        got.release()


async def test_a_name_that_does_not_resolve_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def unknown(*_args: object, **_kwargs: object) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(loop, "getaddrinfo", unknown)
    async with WireClient(8, 8) as client:
        with pytest.raises(CannotConnect, match=r"^Name or service not known$"):
            await call(client, URL("http://upstream.invalid/v1?key=sk-secret"))


async def test_a_connect_that_times_out_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not "cannot connect (TimeoutError)": a timeout, as the step's other waits (and as it was
    on aiohttp's client)."""
    loop = asyncio.get_running_loop()

    async def unanswered(*_args: object, **_kwargs: object) -> Any:
        await asyncio.sleep(30)

    monkeypatch.setattr(loop, "create_connection", unanswered)
    async with WireClient(8, 8) as client:
        with pytest.raises(TimeoutError):
            await client.exchange("POST", URL("http://127.0.0.1:9/v1"), {}, b"{}", 0.05)


async def test_an_idle_connection_whose_transport_is_closing_is_not_taken() -> None:
    """The upstream's FIN closes the transport at once and reports connection_lost a loop
    turn later: a request taking a connection in between must get a new one (a POST is
    never retried), not the closing one."""
    pool = HostPool(0)
    conn = Connection(asyncio.get_running_loop(), pool)
    transport = _Transport()
    conn.connection_made(transport)
    pool.put(conn)
    transport.close()  # (eof_received: asyncio closes the transport, connection_lost comes next)
    assert pool.take(asyncio.get_running_loop().time()) is None
