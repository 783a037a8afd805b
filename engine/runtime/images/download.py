"""Download a result URL an upstream named, as carefully as a client's input URL.

An upstream's answer is not trusted more than a client's request: a hostile or compromised
provider, a third-party Space, or anyone who can rewrite plain-http traffic could name
`http://127.0.0.1:6379/` or a metadata address. So every hop goes through the SSRF guard
(fetch.py), except hops to the provider's own `base_url` origin and the origins
its `results.private_origins` lists (a self-hosted upstream serving from a private address).
Redirects are followed by hand and checked one by one; the provider's auth goes only where
its key may go (engine/dsl/origins.py); the bytes must be an image.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from ...dsl.origins import OriginPattern, may_receive_key, origin_of
from ...dsl.spec import AuthSpec
from ..lifecycle.bodygate import known_length, read_capped
from ..routing.failures import UpstreamFailure
from .fetch import REDIRECT_STATUSES, FetchPolicy, FetchRefused, check_url, parse_url
from .imagetypes import sniff

log = logging.getLogger("pixgate.download")


@dataclass(frozen=True, slots=True)
class DownloadScope:
    """Where results of one provider may come from, and where its auth may go."""

    base_url: str
    send_to: tuple[OriginPattern, ...] = ()  # more origins for the key (auth.send_to)
    private_origins: tuple[OriginPattern, ...] = ()  # fetched without the SSRF guard
    auth: AuthSpec | None = None  # the provider's auth header, sent with `key`
    key: str | None = None
    extra_headers: Mapping[str, str] | None = None  # e.g. the on-gateway upstream's token

    def auth_headers(self) -> dict[str, str]:
        """The headers a hop that may receive the key carries: rendered only when a download
        happens (most results are passed on without one)."""
        headers = dict(self.extra_headers or {})
        auth = self.auth
        if self.key and auth is not None and auth.header and auth.value is not None:
            headers[auth.header] = str(auth.value.render({"key": self.key}))
        return headers

    def trusted(self, url: URL) -> bool:
        origin = origin_of(url)
        if origin is None:
            return False
        return origin == origin_of(self.base_url) or any(
            p.matches(origin) for p in self.private_origins
        )


async def download(
    url: str,
    scope: DownloadScope,
    session: aiohttp.ClientSession,
    guarded: aiohttp.ClientSession,
    policy: FetchPolicy,
    limit: int,
    seconds: float,
) -> bytes | bytearray:
    """The image at an upstream's result URL, or UpstreamFailure (detail in the log only).
    A bytearray when its length was known: the buffer it was read into, not a copy (1 MB+)."""
    try:
        async with asyncio.timeout(seconds):
            data = await _follow(parse_url(url), scope, session, guarded, policy, limit)
    except TimeoutError:
        raise UpstreamFailure("timeout", "downloading the result timed out") from None
    except FetchRefused as exc:
        log.warning("result URL refused: %s", exc)
        raise UpstreamFailure(
            "upstream", "the upstream named a result URL the gateway does not fetch from"
        ) from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailure(
            "upstream", f"downloading the result failed: {exc.__class__.__name__}"
        ) from None
    if sniff(data) is None:
        raise UpstreamFailure("upstream", "the upstream's result URL did not serve an image")
    return data


async def _follow(
    url: URL,
    scope: DownloadScope,
    session: aiohttp.ClientSession,
    guarded: aiohttp.ClientSession,
    policy: FetchPolicy,
    limit: int,
) -> bytes | bytearray:
    for _ in range(policy.max_redirects + 1):
        trusted = scope.trusted(url)
        if not trusted:
            check_url(url, policy.allow_loopback)  # scheme, credentials, literal addresses
        headers = (
            scope.auth_headers() or None
            if may_receive_key(url, scope.base_url, scope.send_to)
            else None
        )
        client = session if trusted else guarded
        async with client.get(url, headers=headers, allow_redirects=False) as resp:
            location = resp.headers.get("Location")
            if resp.status in REDIRECT_STATUSES and location:
                url = url.join(parse_url(location, "result URL refused: invalid redirect"))
                continue
            return await _read_image(resp, limit)
    raise FetchRefused(f"result URL refused: more than {policy.max_redirects} redirects")


async def _read_image(resp: aiohttp.ClientResponse, limit: int) -> bytes | bytearray:
    if resp.status >= 300:  # (a redirect with a Location was followed before this)
        raise UpstreamFailure(
            "upstream", f"downloading the result failed: HTTP {resp.status}", resp.status
        )
    too_big = UpstreamFailure("upstream", "result image is larger than the download limit")
    if resp.content_length and resp.content_length > limit:
        raise too_big
    data = await read_capped(resp.content, limit, known_length(resp))
    if data is None:
        raise too_big
    return data
