"""Turn what a client sent as an image (bytes, data URI, base64, URL) into an InputImage.

Done once per request; provider templates then take whichever form they need (URL, data URI,
base64 or multipart bytes). Client URLs go through the SSRF-guarded fetcher, except URLs of
this gateway's own /files, which are read from storage without any network request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from dataclasses import dataclass

import aiohttp

from ...storage.base import StorageError, is_name
from ...storage.hub import StorageHub
from ..job import InputImage
from ..lifecycle.overload import take_bytes
from .fetch import FetchPolicy, FetchRefused, fetch_image
from .imagetypes import sniff

log = logging.getLogger("pixgate.inputs")
# Checked before anything is fetched: OpenAI's edits take at most 16 images (and a mask).
MAX_INPUT_IMAGES = 16
FETCH_CONCURRENCY = 4  # URLs one request fetches at once
Source = bytes | str
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,]*?)?;base64,", re.IGNORECASE)


class InputError(ValueError):
    """A client image that cannot be used; the message is for a 400, `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(slots=True)
class InputContext:
    session: aiohttp.ClientSession  # the SSRF-guarded one
    storage: StorageHub
    policy: FetchPolicy
    own_urls: tuple[str, ...]  # prefixes under which /files URLs are this gateway's own
    publish_base: str | None  # when set, inputs are stored and get a public URL under it


async def resolve(sources: list[tuple[str, Source]], ctx: InputContext) -> list[InputImage]:
    """Resolve (param, source) pairs, FETCH_CONCURRENCY at a time, keeping their order. Too
    many sources are refused before any is fetched; the first failure cancels the rest."""
    if len(sources) > MAX_INPUT_IMAGES + 1:
        raise InputError(
            f"too many images: at most {MAX_INPUT_IMAGES} (and a mask), got {len(sources)}",
            sources[-1][0],
        )
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(param: str, source: Source) -> InputImage:
        async with gate:
            return await resolve_one(source, param, ctx)

    if len(sources) == 1:
        return [await one(*sources[0])]
    tasks = [asyncio.ensure_future(one(param, src)) for param, src in sources]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()  # no-op for the finished ones; stops the rest after a failure


async def resolve_one(source: Source, param: str, ctx: InputContext) -> InputImage:
    data, public_url = await _load(source, param, ctx)
    if len(data) > ctx.policy.max_bytes:
        raise InputError(
            f"'{param}' is larger than the {ctx.policy.max_bytes // (1024 * 1024)} MB limit", param
        )
    mime = sniff(data)
    if mime is None:
        raise InputError(f"'{param}' is not an image (png, jpeg, webp or gif)", param)
    if public_url is None and ctx.publish_base is not None:
        try:  # the image bed: a URL-only provider gets the stored copy's URL
            public_url = await ctx.storage.store(data, mime, {"kind": "input"}, ctx.publish_base)
        except StorageError as exc:
            message = f"'{param}' could not be stored for the provider: {exc}"
            raise InputError(message, param) from None
    return InputImage(data=data, mime=mime, public_url=public_url)


async def _load(source: Source, param: str, ctx: InputContext) -> tuple[bytes, str | None]:
    if isinstance(source, bytes):
        return source, None
    text = source.strip()
    if not text:
        raise InputError(f"'{param}' is empty", param)
    if text.startswith("data:"):
        match = _DATA_URI.match(text)
        if match is None:
            raise InputError(f"'{param}' is a data URI but not base64-encoded", param)
        return _b64(text[match.end() :], param), None
    if text.lower().startswith(("http://", "https://")):
        own = _own_file(text, ctx)
        if own is not None:
            data = await ctx.storage.read(own, ctx.policy.max_bytes)
            if data is None:
                raise InputError(f"'{param}' points at a gateway file that no longer exists", param)
            await take_bytes(len(data))  # bounded by max_bytes as it was read
            return data, text
        try:
            data, _mime = await fetch_image(text, ctx.session, ctx.policy)
        except FetchRefused as exc:
            log.info("input image URL refused param=%s: %s", param, exc)  # the detail: log only
            raise InputError(f"'{param}': {exc.client_message}", param) from None
        return data, None
    if "://" in text[:16]:
        raise InputError(f"'{param}': only http and https image URLs are allowed", param)
    return _b64(text, param), None


def _own_file(url: str, ctx: InputContext) -> str | None:
    for prefix in ctx.own_urls:
        base = f"{prefix}/files/"
        if url.startswith(base):
            name = url[len(base) :].split("?", 1)[0]
            return name if is_name(name) or "/" not in name else None
    return None


def _b64(text: str, param: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(
            f"'{param}' is not an image URL, a data URI or base64-encoded image data", param
        ) from None
