"""GET /files/{name}: a stored image, from whichever replica wrote it.

Streamed from the backend (Range, ETag / If-None-Match, Content-Length, a long Cache-Control),
or a redirect to the store's own URL in public and presigned mode. The name is matched whole
against the id pattern before anything else sees it; no path or key is built from the
request in any other way.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from ..storage.base import ByteRange, NotSatisfiable, StorageError, is_name
from .errors import ApiError
from .keys import STATE

log = logging.getLogger("pixgate.files")
CACHE = "public, max-age=31536000, immutable"  # a name is never reused for other bytes
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None) -> ByteRange | None:
    """One `bytes=` range; anything else (several ranges, other units) is served whole."""
    match = _RANGE.match((header or "").strip())
    if match is None or match.group(0) == "bytes=-":
        return None
    start, end = (int(g) if g else None for g in match.groups())
    if start is not None and end is not None and end < start:
        return None
    return ByteRange(start, end)


async def files(request: web.Request) -> web.StreamResponse:
    storage = request.app[STATE].storage
    name = request.match_info["name"]
    if not is_name(name):
        raise ApiError(404, f"No such file: {name}", code="file_not_found")
    try:
        target = await storage.redirect(name)
        if target is not None:
            raise web.HTTPFound(target, headers={"Cache-Control": "no-store"})
        opened = await storage.open(
            name, parse_range(request.headers.get("Range")), request.headers.get("If-None-Match")
        )
    except NotSatisfiable as exc:
        raise ApiError(416, f"Range not satisfiable for {name}", code="range_not_satisfiable",
                       headers={"Content-Range": f"bytes */{exc.size}"}) from None  # fmt: skip
    except StorageError as exc:
        log.warning("files: %s unavailable: %s", name, exc)
        raise ApiError(
            503, "storage is unavailable; try again later", type="server_error",
            code="storage_unavailable",
        ) from None  # fmt: skip
    if opened is None:
        raise ApiError(404, f"No such file: {name}", code="file_not_found")
    headers = {"ETag": opened.etag, "Cache-Control": CACHE, "Accept-Ranges": "bytes"}
    if opened.not_modified:
        return web.Response(status=304, headers=headers)
    response = web.StreamResponse(status=206 if opened.partial else 200, headers=headers)
    response.content_type = opened.mime
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.content_length = opened.length
    if opened.partial:
        last = opened.first + opened.length - 1
        response.headers["Content-Range"] = f"bytes {opened.first}-{last}/{opened.size}"
    try:
        await response.prepare(request)
        if request.method != "HEAD" and opened.chunks is not None:
            async for chunk in opened.chunks:
                await response.write(chunk)
        await response.write_eof()
    finally:
        if opened.close is not None:
            await opened.close()
    return response
