"""Request id, access log, client auth and error shaping for every request."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from .errors import ApiError
from .keys import SETTINGS

access_log = logging.getLogger("pixgate.access")
log = logging.getLogger("pixgate.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Paths that need no client key: health, hosted files (unguessable names), the demo upstream.
PUBLIC_PREFIXES = ("/health", "/files/", "/_demo/")


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("x-request-id", "")
    request_id = incoming if _SAFE_ID.match(incoming) else f"req_{secrets.token_hex(12)}"
    request["request_id"] = request_id
    started = time.perf_counter()
    status = 500
    try:
        response = await _shaped(request, handler)
        status = response.status
        response.headers["x-request-id"] = request_id
        return response
    finally:
        if not request.path.startswith("/_demo/"):
            access_log.info(
                "request_id=%s method=%s path=%s model=%s provider=%s status=%s duration_ms=%.1f",
                request_id,
                request.method,
                request.path,
                request.get("model", "-"),
                request.get("provider", "-"),
                status,
                (time.perf_counter() - started) * 1000,
            )


async def _shaped(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return err.response()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body
        return ApiError(
            413, f"request body is larger than the {limit} byte limit", code="request_too_large"
        ).response()
    except web.HTTPException as exc:
        if exc.status >= 400:
            message = {404: "Not found", 405: f"Method {request.method} not allowed"}.get(
                exc.status, exc.reason
            )
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status)
            return ApiError(
                exc.status,
                f"{message}: {request.method} {request.path}"
                if exc.status in (404, 405)
                else message,
                code=code,
            ).response()
        raise
    except Exception:
        log.exception("unhandled error request_id=%s", request.get("request_id"))
        return ApiError(
            500,
            "internal error in the gateway; the request id identifies it in the logs",
            type="server_error",
            code="internal_error",
        ).response()


@web.middleware
async def client_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    keys = request.app[SETTINGS].api_keys
    if not keys or request.path.startswith(PUBLIC_PREFIXES) or request.path == "/":
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "Missing API key: send 'Authorization: Bearer <key>'",
            type="invalid_request_error",
            code="missing_api_key",
        )
    if not any(hmac.compare_digest(token.encode(), k.encode()) for k in keys):
        raise ApiError(
            401, "Incorrect API key provided", type="invalid_request_error", code="invalid_api_key"
        )
    return await handler(request)
