"""Who may use /admin: the admin key as a Bearer token (scripts), or a panel session cookie
with its CSRF token on every state-changing request. Never a cross-site request."""

from __future__ import annotations

import hmac

from aiohttp import web

from ..api.bearer import bearer_token
from ..api.errors import ApiError
from .session import COOKIE, Sessions

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What an anonymous visitor may load: the page (it shows the login form) and its files.
OPEN_PATHS = frozenset({"/admin", "/admin/", "/admin/login"})
CSRF_HEADER = "X-CSRF-Token"


def check_admin(request: web.Request, sessions: Sessions | None) -> None:
    """Raise the right ApiError unless the request may reach this /admin path (`sessions`:
    the panel's, None when the admin API is off). Called before routing: no app lookups."""
    if sessions is None:
        raise ApiError(
            404, "The admin API is off: set PIXGATE_ADMIN_KEY to turn it on", code="not_found"
        )
    admin = sessions.admin_key
    if request.path in OPEN_PATHS or request.path.startswith("/admin/static/"):
        return
    token = bearer_token(request)
    if token is not None:
        if hmac.compare_digest(token.encode(), admin.encode()):
            return
        raise ApiError(401, "Incorrect admin key", code="invalid_api_key")
    sid = sessions.session_id(request.cookies.get(COOKIE))
    if sid is None:
        raise ApiError(
            401,
            "The admin API needs 'Authorization: Bearer <PIXGATE_ADMIN_KEY>' or a panel session",
            code="invalid_api_key",
        )
    if request.method not in SAFE_METHODS:
        if cross_site(request):
            raise ApiError(403, "cross-site request refused", code="csrf_refused")
        if not sessions.csrf_ok(sid, request.headers.get(CSRF_HEADER)):
            raise ApiError(403, f"missing or wrong {CSRF_HEADER} header", code="csrf_refused")


def cross_site(request: web.Request) -> bool:
    """A browser says where a request comes from: Sec-Fetch-Site, else Origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    return origin is not None and origin != f"{request.scheme}://{request.host}"
