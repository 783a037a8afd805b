"""SSRF guard for client-supplied image URLs: real sockets, loopback only.

Names (`public.test`, `evil.test`, `rebind.test`) resolve through a fake resolver, so nothing
leaves the machine. A tripwire trace config fails a test loudly, before any connection, if the
guard ever lets a request head for a forbidden address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from engine.runtime.images.fetch import (
    FetchPolicy,
    FetchRefused,
    address_refusal,
    fetch_image,
    make_guarded_session,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200)
HTML = b"<!doctype html><html><body>not an image</body></html>"

DNS = {
    "public.test": ["127.0.0.1"],
    "evil.test": ["10.1.2.3"],
    "rebind.test": ["127.0.0.1", "10.1.2.3"],
}
FORBIDDEN_NAMES = {"evil.test", "rebind.test"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOP = FetchPolicy(allow_loopback=True, timeout=3.0)


# --- address_refusal -----------------------------------------------------------------------

BLOCKED = [
    ("127.0.0.1", "a loopback address"),
    ("127.255.0.1", "a loopback address"),
    ("10.0.0.1", "a private address"),
    ("172.16.5.4", "a private address"),
    ("172.31.255.255", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.169.254", "a link-local address"),
    ("169.254.0.1", "a link-local address"),
    ("100.64.0.1", "a carrier-grade NAT address"),
    ("100.127.255.254", "a carrier-grade NAT address"),
    ("0.0.0.0", "an unspecified address"),
    ("0.1.2.3", "an unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("239.255.255.250", "a multicast address"),
    ("255.255.255.255", "a broadcast address"),
    ("240.0.0.1", "a reserved address"),
    ("192.0.2.1", "a reserved address"),
    ("198.18.0.1", "a reserved address"),
    ("::1", "a loopback address"),
    ("::", "an unspecified address"),
    ("fd00::1", "a private (unique local) address"),
    ("fc00::1", "a private (unique local) address"),
    ("fe80::1", "a link-local address"),
    ("fe80::1%eth0", "a link-local address"),
    ("fec0::1", "a site-local address"),
    ("ff02::1", "a multicast address"),
    ("ff05::2", "a multicast address"),
    ("100::1", "a reserved address"),
    ("2001:db8::1", "a reserved address"),
    ("::ffff:127.0.0.1", "an IPv4-mapped address embedding 127.0.0.1, a loopback address"),
    ("::ffff:10.0.0.1", "an IPv4-mapped address embedding 10.0.0.1, a private address"),
    ("::ffff:169.254.169.254", "embedding 169.254.169.254, a link-local address"),
    ("::ffff:0.0.0.0", "embedding 0.0.0.0, an unspecified address"),
    ("::127.0.0.1", "an IPv4-compatible address embedding 127.0.0.1, a loopback address"),
    ("::10.0.0.1", "an IPv4-compatible address embedding 10.0.0.1, a private address"),
    ("::93.184.216.34", "a deprecated IPv4-compatible address"),
    ("64:ff9b::a00:1", "a NAT64 address embedding 10.0.0.1, a private address"),
    ("64:ff9b::7f00:1", "a NAT64 address embedding 127.0.0.1, a loopback address"),
    ("64:ff9b::a9fe:a9fe", "embedding 169.254.169.254, a link-local address"),
    ("64:ff9b:1::1", "a local-use NAT64 address"),
    ("2002:a00:1::1", "a 6to4 address embedding 10.0.0.1, a private address"),
    ("2002:7f00:1::1", "a 6to4 address embedding 127.0.0.1, a loopback address"),
    # Teredo: server 65.54.227.120, client 10.0.0.1 (stored bit-inverted)
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "a Teredo address embedding 10.0.0.1"),
    # Teredo to a public client is still a tunnel endpoint, not an image host
    ("2001:0:4136:e378:8000:63bf:a247:27dd", "a Teredo tunnelling address"),
]

ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",
    "2002:5db8:d822::1",
]


@pytest.mark.parametrize(("ip", "reason"), BLOCKED)
def test_address_refusal_blocks(ip: str, reason: str) -> None:
    refusal = address_refusal(ip)
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize("ip", ALLOWED)
def test_address_refusal_allows_public_addresses(ip: str) -> None:
    assert address_refusal(ip) is None


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1"])
def test_allow_loopback_allows_only_loopback(ip: str) -> None:
    assert address_refusal(ip, allow_loopback=True) is None


@pytest.mark.parametrize("ip", ["10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "fd00::1"])
def test_allow_loopback_still_blocks_the_rest(ip: str) -> None:
    assert address_refusal(ip, allow_loopback=True) is not None


def test_address_refusal_rejects_non_addresses() -> None:
    with pytest.raises(ValueError):
        address_refusal("127.1")


# --- a loopback test server and a fake DNS -------------------------------------------------


class FakeResolver(AbstractResolver):
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in DNS:
            raise OSError(f"unknown test host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in DNS[host]
        ]

    async def close(self) -> None:
        return None


@dataclass
class Served:
    port: int
    release: asyncio.Event = field(default_factory=asyncio.Event)
    slow_done: asyncio.Event = field(default_factory=asyncio.Event)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _app(served: Served) -> web.Application:
    async def png(request: web.Request) -> web.Response:
        # The declared type lies; only the magic bytes count.
        return web.Response(body=PNG, content_type="text/plain")

    async def html(request: web.Request) -> web.Response:
        return web.Response(body=HTML, content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/loop/{n + 1}")

    async def chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPTemporaryRedirect("/png" if n <= 1 else f"/chain/{n - 1}")

    async def big_declared(request: web.Request) -> web.StreamResponse:
        # Claims 10 MB, sends a little, then stalls: reading the body would hang to timeout.
        resp = web.StreamResponse(headers={"Content-Length": str(10 * 1024 * 1024)})
        await resp.prepare(request)
        await resp.write(PNG)
        await served.release.wait()
        return resp

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(PNG)
        for _ in range(10):
            await resp.write(bytes(300))
        await resp.write_eof()
        return resp

    async def slow(request: web.Request) -> web.Response:
        try:
            await served.release.wait()
            return web.Response(body=PNG)
        finally:
            served.slow_done.set()

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        served.hits.append(f"{request.host} {request.path}")
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_get("/png", png)
    app.router.add_get("/html", html)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop/{n}", loop)
    app.router.add_get("/chain/{n}", chain)
    app.router.add_get("/big-declared", big_declared)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/slow", slow)
    return app


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    holder = Served(port=0)
    server = TestServer(_app(holder), host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    holder.port = server.port
    try:
        yield holder
    finally:
        holder.release.set()
        started = time.monotonic()
        await asyncio.wait_for(server.close(), 2.0)
        assert time.monotonic() - started < 2.0


def _tripwire(counters: SimpleNamespace) -> aiohttp.TraceConfig:
    """Fails before connecting if the guard ever lets a forbidden target through."""

    async def request_start(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        host = params.url.raw_host or ""
        if (":" in host or host.replace(".", "").isdigit()) and host != "127.0.0.1":
            raise AssertionError(f"guard let a request head for {host}")

    async def resolved(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceDnsResolveHostEndParams,
    ) -> None:
        if params.host in FORBIDDEN_NAMES:
            raise AssertionError(f"guard accepted the addresses of {params.host}")

    async def connected(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceConnectionCreateEndParams,
    ) -> None:
        counters.connections += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(request_start)
    trace.on_dns_resolvehost_end.append(resolved)
    trace.on_connection_create_end.append(connected)
    return trace


@dataclass
class Guarded:
    session: aiohttp.ClientSession
    resolver: FakeResolver
    counters: SimpleNamespace
    policy: FetchPolicy

    async def fetch(self, url: str) -> tuple[bytes, str]:
        return await fetch_image(url, self.session, self.policy)

    async def refused(self, url: str) -> str:
        with pytest.raises(FetchRefused) as info:
            await self.fetch(url)
        return str(info.value)


@contextlib.asynccontextmanager
async def guarded(policy: FetchPolicy) -> AsyncIterator[Guarded]:
    resolver = FakeResolver()
    counters = SimpleNamespace(connections=0)
    session = make_guarded_session(policy, resolver, trace_configs=[_tripwire(counters)])
    try:
        yield Guarded(session, resolver, counters, policy)
    finally:
        await session.close()


# --- fetching ------------------------------------------------------------------------------


async def test_loopback_refused_by_default(served: Served) -> None:
    async with guarded(FetchPolicy(timeout=2.0)) as g:
        message = await g.refused(served.url("/png"))
        assert message == "image URL refused: 127.0.0.1 is a loopback address"
        assert "localhost is a loopback address" in await g.refused(served.url("/png", "localhost"))
        # A name resolving to loopback is caught after DNS.
        message = await g.refused(served.url("/png", "public.test"))
        assert message == "image URL refused: public.test resolves to a loopback address"
        assert "loopback" in await g.refused(served.url("/png", "[::1]"))
        assert "loopback" in await g.refused(served.url("/png", "[::ffff:127.0.0.1]"))
        # Legacy numeric spellings of 127.0.0.1 never reach a socket.
        for host in ("127.1", "2130706433", "0177.0.0.1"):
            assert "is not a valid IP address" in await g.refused(served.url("/png", host))
        assert g.counters.connections == 0
    assert served.hits == []


async def test_allow_loopback_fetches_png(served: Served) -> None:
    async with guarded(LOOP) as g:
        assert await g.fetch(served.url("/png")) == (PNG, "image/png")
        assert await g.fetch(served.url("/png", "public.test")) == (PNG, "image/png")
        assert g.resolver.asked == ["public.test"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://evil.test:{port}/x", "image URL refused: evil.test resolves to a private address"),
        ("http://10.1.2.3/x", "image URL refused: 10.1.2.3 is a private address"),
        ("http://[::ffff:10.1.2.3]/x", "embedding 10.1.2.3, a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[fd00::1]:8080/", "a private (unique local) address"),
        ("http://rebind.test:{port}/png", "rebind.test resolves to a private address"),
        ("file:///etc/passwd", "only http and https URLs are allowed"),
        ("gopher://public.test/", "only http and https URLs are allowed"),
    ],
)
async def test_redirect_to_forbidden_target_refused(
    served: Served, target: str, reason: str
) -> None:
    async with guarded(LOOP) as g:
        first = served.url("/redirect") + "?to=" + target.format(port=served.port)
        message = await g.refused(first)
        assert reason in message
        assert message.startswith("image URL refused: ")
        # Only the first hop ever connected; the second was stopped before any socket.
        assert g.counters.connections == 1
        assert served.hits == [f"127.0.0.1:{served.port} /redirect"]
        if "evil.test" in target:
            assert g.resolver.asked == ["evil.test"]
        else:
            assert "evil.test" not in g.resolver.asked


async def test_rebinding_name_refused(served: Served) -> None:
    async with guarded(LOOP) as g:
        message = await g.refused(served.url("/png", "rebind.test"))
        assert message == "image URL refused: rebind.test resolves to a private address"
        assert "10.1.2.3" not in message  # never reveal what an internal name resolved to
        assert g.counters.connections == 0
    assert served.hits == []


async def test_unknown_name_refused(served: Served) -> None:
    async with guarded(LOOP) as g:
        message = await g.refused(served.url("/png", "nowhere.test"))
        assert message == "image URL refused: could not resolve host nowhere.test"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://public.test/image.png",
        "gopher://public.test:70/_GET",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "//public.test/png",
        "public.test/png",
    ],
)
async def test_scheme_refused(url: str) -> None:
    async with guarded(LOOP) as g:
        assert await g.refused(url) == "image URL refused: only http and https URLs are allowed"
        assert g.resolver.asked == []


async def test_userinfo_refused(served: Served) -> None:
    async with guarded(LOOP) as g:
        message = await g.refused(f"http://alice:s3cret@public.test:{served.port}/png")
        assert "user name or password" in message
        assert "s3cret" not in message
    assert served.hits == []


async def test_relative_redirect_followed(served: Served) -> None:
    async with guarded(LOOP) as g:
        assert await g.fetch(served.url("/redirect?to=/png")) == (PNG, "image/png")
        assert await g.fetch(served.url("/chain/5")) == (PNG, "image/png")  # exactly the limit


async def test_too_many_redirects_refused(served: Served) -> None:
    async with guarded(LOOP) as g:
        message = await g.refused(served.url("/loop/0"))
        assert message == "image URL refused: more than 5 redirects"
        assert len(served.hits) == 6
    async with guarded(FetchPolicy(allow_loopback=True, max_redirects=0)) as g:
        assert "more than 0 redirects" in await g.refused(served.url("/redirect?to=/png"))


async def test_declared_oversize_refused_before_reading(served: Served) -> None:
    policy = FetchPolicy(allow_loopback=True, max_bytes=1000, timeout=2.0)
    async with guarded(policy) as g:
        started = time.monotonic()
        message = await g.refused(served.url("/big-declared"))
        assert message == "image at URL is larger than 1000 bytes"
        assert time.monotonic() - started < 1.0  # did not wait for the stalled body


async def test_chunked_oversize_refused(served: Served) -> None:
    policy = FetchPolicy(allow_loopback=True, max_bytes=1000, timeout=2.0)
    async with guarded(policy) as g:
        assert await g.refused(served.url("/big-chunked")) == (
            "image at URL is larger than 1000 bytes"
        )
    async with guarded(FetchPolicy(allow_loopback=True, max_bytes=10_000)) as g:
        data, mime = await g.fetch(served.url("/big-chunked"))
        assert mime == "image/png"
        assert len(data) == len(PNG) + 3000


def test_default_size_message() -> None:
    from engine.runtime.images.fetch import _human

    assert _human(FetchPolicy().max_bytes) == "20 MB"


async def test_non_image_refused(served: Served) -> None:
    async with guarded(LOOP) as g:
        assert await g.refused(served.url("/html")) == (
            "the file at the image URL is not an image (png, jpeg, webp or gif)"
        )


async def test_http_error_refused(served: Served) -> None:
    async with guarded(LOOP) as g:
        assert await g.refused(served.url("/missing")) == (
            "fetching the image URL failed: HTTP 404"
        )


async def test_slow_server_times_out(served: Served) -> None:
    async with guarded(FetchPolicy(allow_loopback=True, timeout=0.5)) as g:
        started = time.monotonic()
        message = await g.refused(served.url("/slow"))
        elapsed = time.monotonic() - started
    assert message == "fetching the image URL timed out after 0.5s"
    assert 0.4 < elapsed < 1.5
    served.release.set()
    await asyncio.wait_for(served.slow_done.wait(), 1.0)  # the handler finished; close is clean


async def test_needs_a_guarded_session() -> None:
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(ValueError, match="make_guarded_session"):
            await fetch_image("http://public.test/png", plain, LOOP)
    async with guarded(FetchPolicy()) as g:
        with pytest.raises(ValueError, match="allow_loopback"):
            await fetch_image("http://public.test/png", g.session, LOOP)
