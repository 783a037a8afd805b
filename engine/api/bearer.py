"""The client's `Authorization: Bearer <token>`, read one way for every endpoint."""

from __future__ import annotations

from aiohttp import web


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
