"""POST /v1/chat/completions (being built)."""

from __future__ import annotations

from aiohttp import web

from .errors import ApiError


async def completions(request: web.Request) -> web.StreamResponse:
    raise ApiError(501, "chat completions are not implemented yet", type="server_error")
