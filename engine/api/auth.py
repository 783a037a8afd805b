"""Client auth for every request: backend, a gateway key (or none configured); relay, a
provider's own key, by pattern. Runs after a CORS preflight (browsers send that without the
key) and before the process's bounds (a request refused for its key never counts)."""

from __future__ import annotations

import functools
import hmac

from aiohttp import web

from ..panel.guard import check_admin
from .bearer import bearer_token
from .context import RequestContext
from .errors import ApiError

# Paths that need no client key: health, hosted files (unguessable names), the demo upstream.
# /metrics checks PIXGATE_METRICS_KEY itself.
PUBLIC_PREFIXES = ("/health", "/files/", "/_demo/", "/metrics")


def authenticate(request: web.Request, ctx: RequestContext) -> None:
    """Let the request through (noting who called it in `ctx`), or raise the 401 (403 for
    /admin)."""
    path = request.path
    if path.startswith(PUBLIC_PREFIXES) or path == "/":
        return
    if path.startswith("/admin"):
        check_admin(request, ctx.gateway.sessions)
        return
    keys = ctx.gateway.settings.api_keys
    snapshot = ctx.snapshot  # the request keeps this one config to its end
    routes = snapshot.routes
    token = bearer_token(request)
    if token and keys and routes.backend and _matches(token, keys):
        return
    clients = snapshot.clients
    if token and clients and routes.backend:
        client = clients.find(token)
        if client is not None:
            ctx.client = client
            return
    if token and routes.relay:
        provider = snapshot.relay_provider(token)
        if provider is not None:
            ctx.relay = (provider.id, token)
            return
    if not keys and not clients and routes.backend:
        return  # an open gateway (loopback, or --allow-anonymous)
    if not token:
        raise ApiError(
            401, "Missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    raise ApiError(401, "Incorrect API key provided", code="invalid_api_key")


def _matches(token: str, keys: tuple[str, ...]) -> bool:
    given = token.encode()
    for key in _encoded(keys):  # noqa: SIM110  (not any(...): no generator frame per request)
        if hmac.compare_digest(given, key):
            return True
    return False


@functools.lru_cache(maxsize=4)
def _encoded(keys: tuple[str, ...]) -> tuple[bytes, ...]:
    """The gateway's keys as bytes, once (compare_digest takes str only when it is ASCII)."""
    return tuple(key.encode() for key in keys)
