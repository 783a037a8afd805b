"""Turn upstream images (URL, base64, bytes) into what the client asked for (url or b64_json)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ...rawtext import RawText
from ...storage.base import StorageError
from ...storage.hub import StorageHub
from ..calls.imagerefs import ImageRef, decode_b64
from ..calls.waitclock import WaitClock
from ..routing.failures import UpstreamFailure
from .download import DownloadScope
from .download import download as guarded_download
from .fetch import FetchPolicy
from .imagetypes import sniff

# base64 runs inline: binascii holds the GIL, so a worker thread would only add hand-offs
# (bench/README.md, "download"); ~1 ms per MB.


@dataclass(slots=True)
class ResultContext:
    session: aiohttp.ClientSession
    storage: StorageHub
    public_url: str
    fetch_session: aiohttp.ClientSession  # the SSRF-guarded one
    fetch_policy: FetchPolicy
    scope: DownloadScope
    max_download: int = 50 * 1024 * 1024
    download_timeout: float = 60.0
    clock: WaitClock = field(default_factory=WaitClock)
    meta: dict[str, Any] = field(default_factory=dict)  # kept with stored images (gallery)


# One `data[]` item. Base64 may be a RawText: still in the upstream's bytes (or in the bytes
# just encoded), written out as it is by `rawtext.dumps`; `str()` of it is the real string.
ClientItem = dict[str, str | RawText]


def passed_through(ref: ImageRef, response_format: str, rehost: bool) -> ClientItem | None:
    """The `data[]` item when the upstream's image already is what the client asked for
    (base64 for b64_json, a URL kept as it is for url): nothing to fetch, encode or store.
    None otherwise."""
    if response_format == "b64_json":
        if ref.kind != "b64":
            return None
        value = ref.value
        return {"b64_json": value.strip() if isinstance(value, RawText) else str(value).strip()}
    if ref.kind == "url" and not rehost:
        return {"url": str(ref.value)}
    return None


async def to_client(
    ref: ImageRef, response_format: str, rehost: bool, ctx: ResultContext
) -> ClientItem:
    """One `data[]` item: `{"url": ...}` or `{"b64_json": ...}`."""
    item = passed_through(ref, response_format, rehost)
    if item is not None:
        return item
    if response_format == "b64_json":
        if isinstance(ref.value, bytes):  # an answer's own bytes: nothing has looked at them
            data: bytes | bytearray = _image(ref.value)
        else:  # a download is checked for an image already
            data = await download(str(ref.value), ctx)
        return {"b64_json": RawText(memoryview(base64.b64encode(data)))}
    kind = "generated"
    if ref.kind == "url":
        data = bytes(await download(str(ref.value), ctx))  # storage keeps immutable bytes
        kind = "rehosted"
    elif ref.kind == "b64":
        data = decode_b64(ref.value if isinstance(ref.value, RawText) else str(ref.value))
    else:
        data = ref.value if isinstance(ref.value, bytes) else bytes(str(ref.value), "latin-1")
    mime = sniff(data)
    if mime is None:
        raise UpstreamFailure("upstream", NOT_AN_IMAGE)
    try:
        url = await ctx.storage.store(data, mime, {**ctx.meta, "kind": kind}, ctx.public_url)
    except StorageError as exc:
        raise UpstreamFailure("upstream", f"storing the image failed: {exc}") from None
    return {"url": url}


NOT_AN_IMAGE = "upstream result is not a recognised image"


def _image(data: bytes) -> bytes:
    """`data` if it is an image: an empty or HTML body under a success status (a 204, an
    unsolicited 101, a 200 `image/png` error page) is no image to hand a client."""
    if sniff(data) is None:
        raise UpstreamFailure("upstream", NOT_AN_IMAGE)
    return data


async def download(url: str, ctx: ResultContext) -> bytes | bytearray:
    """An upstream result URL's image, through the SSRF guard (download.py)."""
    with ctx.clock.waiting():
        return await guarded_download(
            url,
            ctx.scope,
            ctx.session,
            ctx.fetch_session,
            ctx.fetch_policy,
            ctx.max_download,
            ctx.download_timeout,
        )
