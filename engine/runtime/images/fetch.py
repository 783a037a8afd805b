"""Fetch client-supplied image URLs without becoming an SSRF proxy.

Clients may pass input images as http(s) URLs. Fetching them from inside the gateway's
network is dangerous: `http://169.254.169.254/...`, `http://10.0.0.5:6379/`, or a public name
that resolves (or later re-resolves) to an internal address. The defences here:

* only `http`/`https`, no userinfo, checked for the first URL and every redirect hop
  (redirects are followed by hand, `allow_redirects=False`, at most `max_redirects`);
* a guarded session whose `TCPConnector` resolves through `GuardedResolver`: every address a
  name resolves to is checked AFTER DNS, and the connector connects only to those checked
  addresses, so DNS rebinding between "check" and "connect" cannot happen;
* which addresses are refused is addresses.py's decision;
* literal-IP hosts never reach a resolver in aiohttp, so `fetch_image` checks them itself
  (and refuses legacy numeric forms such as `127.1` or `2130706433`);
* a size cap (`Content-Length` and a streamed count), one timeout for the whole fetch, and the
  body must be an image by its magic bytes.

`FetchRefused` says why, for the log; its `client_message` is what the client sees (HTTP
400): one generic sentence for every refusal about the host (private, loopback, unresolvable,
unreachable), so the gateway is no oracle for the internal network's names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import weakref
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..calls.clientlimits import client_limits
from ..lifecycle.bodygate import known_length
from ..lifecycle.overload import take_bytes
from .addresses import address_refusal
from .imagetypes import sniff

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024
USER_AGENT = "pixgate-image-fetch"


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 20 * 1024 * 1024
    timeout: float = 20.0  # whole fetch, all redirects
    max_redirects: int = 5
    allow_loopback: bool = False  # test-only: lets tests reach loopback test servers

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.timeout <= 0 or self.max_redirects < 0:
            raise ValueError("FetchPolicy: max_bytes and timeout must be > 0, max_redirects >= 0")


HOST_REFUSED = "image URL refused: the gateway does not fetch from that host"


class FetchRefused(Exception):
    """The image URL cannot be used. `str()` is the detail (log it); `client_message` is safe
    to show the client: the detail, or HOST_REFUSED when it is about the host (`host=True`)."""

    def __init__(self, message: str, *, host: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.client_message = HOST_REFUSED if host else message

    def __str__(self) -> str:
        return self.message


# --- hosts and URLs ------------------------------------------------------------------------


def _looks_like_ip(host: str) -> bool:
    """aiohttp's own test: such hosts are connected to as-is, never passed to the resolver."""
    return ":" in host or host.replace(".", "").isdigit()


def _host_refusal(host: str, allow_loopback: bool) -> str | None:
    """A full refusal message for a URL host, or None. Names are checked again after DNS."""
    name = host.rstrip(".").lower()
    if not name:
        return "image URL refused: the URL has no host"
    if not allow_loopback and (name == "localhost" or name.endswith(".localhost")):
        return f"image URL refused: {name} is a loopback address"
    if not _looks_like_ip(host):
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # `127.1`, `2130706433`, `0177.0.0.1`: sockets would map these onto an address.
        return f"image URL refused: {host} is not a valid IP address"
    reason = address_refusal(ip, allow_loopback=allow_loopback)
    return None if reason is None else f"image URL refused: {host} is {reason}"


def check_url(url: URL, allow_loopback: bool) -> None:
    if url.scheme not in ("http", "https"):
        raise FetchRefused("image URL refused: only http and https URLs are allowed")
    if url.raw_user is not None or url.raw_password is not None:
        raise FetchRefused("image URL refused: URLs with a user name or password are not allowed")
    host = url.raw_host
    if not host:
        raise FetchRefused("image URL refused: the URL has no host")
    refusal = _host_refusal(host, allow_loopback)
    if refusal is not None:
        raise FetchRefused(refusal, host=True)


def parse_url(url: str, invalid: str = "image URL refused: not a valid URL") -> URL:
    try:
        parsed = URL(url)
        parsed.port  # noqa: B018  (an invalid port raises here on some yarl versions)
    except (ValueError, TypeError):
        raise FetchRefused(invalid) from None
    return parsed


# --- the guarded session -------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """Resolves through `inner`, then refuses (FetchRefused) if ANY address is forbidden.

    The connector connects only to the addresses returned here, so a checked answer is also
    the address used: a second, rebinding DNS answer is never consulted.
    """

    def __init__(self, policy: FetchPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        shown = host.rstrip(".").lower()
        refusal = _host_refusal(host, self.policy.allow_loopback)
        if refusal is not None:
            raise FetchRefused(refusal, host=True)
        unresolved = FetchRefused(f"image URL refused: could not resolve host {shown}", host=True)
        try:
            results = await self._inner.resolve(host, port, family=family)
        except OSError:
            raise unresolved from None
        if not results:
            raise unresolved
        for result in results:
            try:
                ip = ipaddress.ip_address(result["host"])
            except ValueError:
                raise FetchRefused(
                    f"image URL refused: {shown} resolves to an unrecognised address", host=True
                ) from None
            reason = address_refusal(ip, allow_loopback=self.policy.allow_loopback)
            if reason is not None:
                # Name the client's host, not the internal address it resolved to.
                raise FetchRefused(f"image URL refused: {shown} resolves to {reason}", host=True)
        return results

    async def close(self) -> None:
        await self._inner.close()


_GUARDS: weakref.WeakKeyDictionary[aiohttp.ClientSession, FetchPolicy] = weakref.WeakKeyDictionary()


def make_guarded_session(
    policy: FetchPolicy,
    resolver: AbstractResolver | None = None,
    *,
    trace_configs: list[aiohttp.TraceConfig] | None = None,
) -> aiohttp.ClientSession:
    """A ClientSession for `fetch_image` only: DNS-checked connector, no proxy, no cookies.

    Call inside the running loop (app startup) and close it at shutdown. `resolver` is for
    tests (a fake DNS); the default is aiohttp's ThreadedResolver (getaddrinfo). An injected
    resolver stays owned by the caller. Never use this session for upstream calls, and never
    use another session with `fetch_image`.
    """
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy, resolver),
        limit=64,
        limit_per_host=8,
        ttl_dns_cache=60,  # caches only answers that passed the guard
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # one client's cookies never reach another's fetch
        trust_env=False,  # never route through an environment proxy (it would resolve for us)
        headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
        timeout=aiohttp.ClientTimeout(total=policy.timeout),
        **client_limits(),
        trace_configs=trace_configs,
    )
    _GUARDS[session] = policy
    return session


# --- fetching ------------------------------------------------------------------------------


async def fetch_image(
    url: str, session: aiohttp.ClientSession, policy: FetchPolicy
) -> tuple[bytes, str]:
    """Download an image URL given by a client: `(data, mime)` or FetchRefused.

    `session` must come from `make_guarded_session` with the same `allow_loopback`.
    """
    guard = _GUARDS.get(session)
    if guard is None:
        raise ValueError("fetch_image needs a session made by make_guarded_session")
    if guard.allow_loopback != policy.allow_loopback:
        raise ValueError("fetch_image: policy.allow_loopback differs from the session's")
    current = parse_url(url)
    check_url(current, policy.allow_loopback)
    try:
        async with asyncio.timeout(policy.timeout):
            return await _follow(current, session, policy)
    except TimeoutError:
        raise FetchRefused(f"fetching the image URL timed out after {policy.timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise FetchRefused(
            _client_error_message(exc), host=isinstance(exc, aiohttp.ClientConnectionError)
        ) from None


async def _follow(
    url: URL, session: aiohttp.ClientSession, policy: FetchPolicy
) -> tuple[bytes, str]:
    redirects = 0
    while True:
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status in REDIRECT_STATUSES and "Location" in resp.headers:
                redirects += 1
                if redirects > policy.max_redirects:
                    raise FetchRefused(
                        f"image URL refused: more than {policy.max_redirects} redirects"
                    )
                target = parse_url(
                    resp.headers["Location"], "image URL refused: it redirects to an invalid URL"
                )
                url = url.join(target)
                check_url(url, policy.allow_loopback)
                continue
            if not 200 <= resp.status < 300:
                raise FetchRefused(f"fetching the image URL failed: HTTP {resp.status}")
            data = await _read_capped(resp, policy.max_bytes)
        mime = sniff(data)
        if mime is None:
            raise FetchRefused("the file at the image URL is not an image (png, jpeg, webp or gif)")
        return data, mime


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    too_big = f"image at URL is larger than {_human(max_bytes)}"
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise FetchRefused(too_big)
    length = known_length(resp)  # None when compressed: the decompressed size is unknown
    if length is not None:  # the request's byte budget, before the bytes leave the socket
        await take_bytes(length)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise FetchRefused(too_big)
        if length is None:
            await take_bytes(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


def _human(size: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _client_error_message(exc: aiohttp.ClientError) -> str:
    """A client-safe reason: no OS error text, no resolved or internal addresses."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "fetching the image URL failed: TLS error"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "fetching the image URL failed: could not connect"
    if isinstance(exc, aiohttp.InvalidURL):
        return "image URL refused: not a valid URL"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "fetching the image URL failed: the server closed the connection"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "fetching the image URL failed: invalid HTTP response"
    return f"fetching the image URL failed ({exc.__class__.__name__})"
