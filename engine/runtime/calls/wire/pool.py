"""Keep-alive connections to upstream origins, and the exchange of one request over them.

`WireClient` is what a step exchange runs on instead of aiohttp's `ClientSession`, whose
general machinery (cookies, proxies, traces, payload classes, redirects, a timer per
request) cost about 65 µs of CPU per exchange, more than the rest of a request's routing.
What pixgate needs of it is narrow: one request with a body already in memory, one answer
read through a StreamReader, on a pooled connection. Redirects are followed by the caller
(upstream.py), where the key rules are."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Mapping

from yarl import URL

from .connection import Answer, Connection, WireError
from .head import encode_request

KEEPALIVE = 15.0  # seconds an idle connection is kept (aiohttp's default too)
# RFC 9112 9.3.1: a request that may be repeated is retried once when a kept-alive
# connection turns out to have been closed before any answer came (as aiohttp does).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class CannotConnect(WireError):
    """No connection to the upstream (refused, unreachable, no such host, TLS)."""


class HostPool:
    """Idle connections to one origin, newest last, and its bound on exchanges at once."""

    __slots__ = ("idle", "max_idle", "slots")

    def __init__(self, limit: int) -> None:
        self.idle: list[Connection] = []
        self.max_idle = limit or 256
        self.slots = asyncio.Semaphore(limit) if limit else None

    def put(self, conn: Connection) -> None:
        conn.idle_since = asyncio.get_running_loop().time()
        idle = self.idle
        idle.append(conn)
        if len(idle) > self.max_idle:
            idle[0].close()

    def forget(self, conn: Connection) -> None:
        if not conn.busy and conn in self.idle:
            self.idle.remove(conn)

    def take(self, now: float) -> Connection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE:
                return conn
            conn.close()
        return None


class WireClient:
    """Exchanges with upstreams: at most `limit` at once, `limit_per_host` per origin (0: no
    bound, as with aiohttp's connector)."""

    def __init__(self, limit: int, limit_per_host: int, user_agent: str = "pixgate") -> None:
        self._limit_per_host = limit_per_host
        self._slots = asyncio.Semaphore(limit) if limit else None
        self._hosts: dict[tuple[str, str, int], HostPool] = {}
        self._user_agent = user_agent
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def exchange(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes | None,
        connect_timeout: float,
    ) -> Answer:
        """Send one request and return the head of its answer; the caller reads the body
        from `content` and must call `release()` (in a `finally`)."""
        if self._closed:
            raise WireError("the gateway is shutting down")
        scheme = url.scheme
        host = url.raw_host
        if scheme not in ("http", "https") or not host:
            raise WireError("only http and https URLs with a host can be called")
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        pool = self._hosts.get(key)
        if pool is None:
            pool = self._hosts[key] = HostPool(self._limit_per_host)
        request = encode_request(method, url, headers, body, self._user_agent)
        slots, host_slots = self._slots, pool.slots
        if slots is not None:
            await slots.acquire()
        try:
            if host_slots is not None:
                await host_slots.acquire()
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        released = False
        try:
            loop = asyncio.get_running_loop()
            conn = pool.take(loop.time())
            retry = conn is not None and method in IDEMPOTENT
            if conn is None:
                conn = await self._connect(pool, scheme, host, port, connect_timeout)
            try:
                answer = await _answer_of(conn, request, url)
            except WireError:
                if not retry or conn.received:
                    raise
                conn = await self._connect(pool, scheme, host, port, connect_timeout)
                answer = await _answer_of(conn, request, url)
            answer.slots = (slots, host_slots)  # they go back with the answer
            released = True
            return answer
        finally:
            if not released:
                if host_slots is not None:
                    host_slots.release()
                if slots is not None:
                    slots.release()

    async def _connect(
        self, pool: HostPool, scheme: str, host: str, port: int, within: float
    ) -> Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(within):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop, pool),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError:
            raise  # a timeout, as every other wait of a step (an OSError too since 3.11)
        except ssl.SSLError as exc:
            raise CannotConnect(f"TLS: {exc.reason or exc.__class__.__name__}") from None
        except socket.gaierror as exc:
            # its errno is a resolver code, not an errno: the text it comes with says it
            raise CannotConnect(exc.strerror or "the name does not resolve") from None
        except OSError as exc:
            # the errno's own text: asyncio's strerror names the address
            reason = os.strerror(exc.errno) if exc.errno else exc.strerror
            raise CannotConnect(reason or exc.__class__.__name__) from None
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for pool in self._hosts.values():
            for conn in list(pool.idle):
                conn.close()
            pool.idle.clear()


async def _answer_of(conn: Connection, request: bytes | list[bytes], url: URL) -> Answer:
    try:
        return await conn.send(request, url)
    except BaseException:
        conn.busy = False
        conn.close()
        raise
