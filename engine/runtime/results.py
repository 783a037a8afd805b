"""Turn upstream images (URL, base64, bytes) into what the client asked for (url or b64_json)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from ..rawtext import RawText
from .bodygate import hold_for
from .executor import ImageRef, decode_b64
from .failures import UpstreamFailure
from .imagetypes import sniff
from .storage import LocalStorage
from .waitclock import WaitClock

# base64 runs inline: binascii holds the GIL, so a worker thread would only add hand-offs
# (bench/README.md, "download"); ~1 ms per MB.


@dataclass(slots=True)
class ResultContext:
    session: aiohttp.ClientSession
    storage: LocalStorage
    public_url: str
    max_download: int = 50 * 1024 * 1024
    download_timeout: float = 60.0
    auth_host: str | None = None  # downloads from the provider's own host carry its auth
    auth_headers: dict[str, str] | None = None
    clock: WaitClock = field(default_factory=WaitClock)


# One `data[]` item. Base64 may be a RawText: still in the upstream's bytes (or in the bytes
# just encoded), written out as it is by `rawtext.dumps`; `str()` of it is the real string.
ClientItem = dict[str, str | RawText]


async def to_client(
    ref: ImageRef, response_format: str, rehost: bool, ctx: ResultContext
) -> ClientItem:
    """One `data[]` item: `{"url": ...}` or `{"b64_json": ...}`."""
    if response_format == "b64_json":
        if ref.kind == "b64":
            value = ref.value
            return {"b64_json": value.strip() if isinstance(value, RawText) else str(value).strip()}
        data = ref.value if isinstance(ref.value, bytes) else await download(str(ref.value), ctx)
        return {"b64_json": RawText(memoryview(base64.b64encode(data)))}
    if ref.kind == "url" and not rehost:
        return {"url": str(ref.value)}
    if ref.kind == "url":
        data = await download(str(ref.value), ctx)
    elif ref.kind == "b64":
        data = decode_b64(ref.value if isinstance(ref.value, RawText) else str(ref.value))
    else:
        data = ref.value if isinstance(ref.value, bytes) else bytes(str(ref.value), "latin-1")
    mime = sniff(data)
    if mime is None:
        raise UpstreamFailure("upstream", "upstream result is not a recognised image")
    name = await ctx.storage.save(data, mime)
    return {"url": f"{ctx.public_url}/files/{name}"}


async def download(url: str, ctx: ResultContext) -> bytes:
    """Stream an upstream result URL with a size cap and a timeout."""
    headers = ctx.auth_headers if ctx.auth_host and URL(url).host == ctx.auth_host else None
    timeout = aiohttp.ClientTimeout(total=ctx.download_timeout)
    try:
        with ctx.clock.waiting():
            async with ctx.session.get(url, headers=headers, timeout=timeout) as resp:
                return await _read_image(resp, ctx.max_download)
    except TimeoutError:
        raise UpstreamFailure("timeout", "downloading the result timed out") from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailure(
            "upstream", f"downloading the result failed: {exc.__class__.__name__}"
        ) from None


async def _read_image(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if resp.status >= 400:
        raise UpstreamFailure(
            "upstream", f"downloading the result failed: HTTP {resp.status}", resp.status
        )
    too_big = UpstreamFailure("upstream", "result image is larger than the download limit")
    if resp.content_length and resp.content_length > limit:
        raise too_big
    await hold_for(resp.content_length or 0)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
        await hold_for(size)
    return b"".join(chunks)
