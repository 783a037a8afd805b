"""CORS: browser pages on other origins may call the API (routes.yaml `cors:`, CorsSpec).

A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here (the middleware
asks `preflight` first), before client auth: browsers send it without the Authorization
header. Every other response to a CORS request gets its `Access-Control-*` headers just
before its headers go out (aiohttp's on_response_prepare; the middleware calls `on_prepare`
itself for an answer made before routing), so streams and errors (a 401 the page should be
able to read) carry them too. `/admin` never does.
"""

from __future__ import annotations

from aiohttp import web

from ..dsl.spec import CorsSpec
from .context import CONTEXT, RequestContext
from .errors import ApiError
from .keys import STATE


def _spec(request: web.Request) -> CorsSpec:
    ctx = request.get(CONTEXT)  # (none on an answer aiohttp made before the middleware ran)
    snapshot = ctx.snapshot if ctx is not None else request.app[STATE].snapshot
    return snapshot.routes.cors


def preflight(request: web.Request, ctx: RequestContext) -> web.Response | None:
    """The answer to a CORS preflight, or None when the request is not one (any other
    request, or one for a path CORS does not cover, goes on as usual)."""
    if request.method != "OPTIONS":
        return None
    origin = request.headers.get("Origin")
    if origin is None or request.headers.get("Access-Control-Request-Method") is None:
        return None
    cors = ctx.snapshot.routes.cors
    if not cors.applies(request.path):
        return None
    if not cors.allows(origin):
        raise ApiError(
            403,
            f"Origin {origin} may not call this gateway from a browser "
            "(routes.yaml cors.allow_origins)",
            code="cors_origin_not_allowed",
        )
    headers = {
        "Access-Control-Allow-Origin": _allow_origin(cors, origin),
        "Access-Control-Allow-Methods": ", ".join(cors.allow_methods),
        "Access-Control-Max-Age": str(int(cors.max_age)),
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    wanted = request.headers.get("Access-Control-Request-Headers", "").strip()
    allowed = wanted if "*" in cors.allow_headers else ", ".join(cors.allow_headers)
    if allowed:
        headers["Access-Control-Allow-Headers"] = allowed
    return web.Response(status=204, headers=headers)


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """The CORS headers of a response to an allowed origin (aiohttp's on_response_prepare)."""
    origin = request.headers.get("Origin")
    if origin is None or "Access-Control-Allow-Origin" in response.headers:
        return
    cors = _spec(request)
    if not cors.applies(request.path) or not cors.allows(origin):
        return
    response.headers["Access-Control-Allow-Origin"] = _allow_origin(cors, origin)
    if "*" not in cors.allow_origins:
        response.headers.add("Vary", "Origin")
    exposed = _exposed(cors, response)
    if exposed:
        response.headers["Access-Control-Expose-Headers"] = ", ".join(exposed)


def _allow_origin(cors: CorsSpec, origin: str) -> str:
    return "*" if "*" in cors.allow_origins else origin


def _exposed(cors: CorsSpec, response: web.StreamResponse) -> list[str]:
    """Configured names, with `prefix*` expanded to the response's own matching headers."""
    names: list[str] = []
    present = [name.lower() for name in response.headers]
    for pattern in cors.expose_headers:
        if pattern.endswith("*"):
            names += [n for n in present if n.startswith(pattern[:-1]) and n not in names]
        elif pattern not in names:
            names.append(pattern)
    return names
