"""JSON responses through orjson (large base64 bodies are the common case here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .. import rawtext


def json_response(
    obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`obj` may hold RawText (base64 still in an upstream's body): it is written in place."""
    return web.Response(
        status=status, body=rawtext.dumps(obj), content_type="application/json", headers=headers
    )
