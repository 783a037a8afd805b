"""The panel's pages and the JSON endpoints only the panel needs (the shared admin endpoints,
/admin/keys, /admin/config and /admin/reload, live in api/admin.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from ..api import images, params
from ..api.bearer import bearer_token
from ..api.context import context
from ..api.errors import ApiError, bad_request
from ..api.jsonio import json_response
from ..api.keys import SETTINGS, STATE
from ..api.params import MAX_N
from ..dsl.sizes import parse_size
from ..runtime.job import ImageJob
from ..storage.base import StorageError, is_name
from .fleet import figures_of
from .keys import FLEET, LOGS, SESSIONS, THROTTLE, THUMBS
from .logbuffer import END
from .masking import masker
from .session import BACKOFF_BASE, BACKOFF_CAP, COOKIE
from .thumbs import MAX_SOURCE

# No inline script or style, nothing from elsewhere, never framed. Images may come from the
# storage's public or presigned URLs.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
STATIC_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
MAX_REPLAY = 1000


def secured(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _static(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


async def redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/admin/")


async def page(request: web.Request) -> web.StreamResponse:
    """The app for a signed-in admin, the login form for anyone else."""
    signed_in = request.app[SESSIONS].session_id(request.cookies.get(COOKIE)) is not None
    body = _static("index.html" if signed_in else "login.html")
    return secured(web.Response(body=body, content_type="text/html", charset="utf-8"))


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    kind = STATIC_TYPES.get(name[name.rfind(".") :]) if "." in name else None
    if kind is None or "/" in name or name.startswith("."):
        raise ApiError(404, "Not found", code="not_found")
    try:
        body = _static(name)
    except (FileNotFoundError, IsADirectoryError):
        raise ApiError(404, "Not found", code="not_found") from None
    return secured(web.Response(body=body, content_type=kind, charset="utf-8"))


async def login(request: web.Request) -> web.StreamResponse:
    address = request.remote or "?"
    throttle = request.app[THROTTLE]
    board = request.app[FLEET].board  # with Redis the back-off holds across the fleet
    shared = await board.login_wait(address) if board is not None else None
    wait = max(throttle.wait(address), shared or 0.0)
    if wait > 0:
        raise ApiError(
            429,
            f"too many failed logins: try again in {wait:.0f} s",
            code="login_throttled",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        raise bad_request('send JSON: {"key": "<PIXGATE_ADMIN_KEY>"}') from None
    key = body.get("key") if isinstance(body, dict) else None
    settings = request.app[SETTINGS]
    if not isinstance(key, str) or not hmac.compare_digest(
        key.encode(), (settings.admin_key or "").encode()
    ):
        delay = throttle.failed(address)
        if board is not None:
            delay = max(delay, await board.login_failed(address, BACKOFF_BASE, BACKOFF_CAP) or 0)
        logging.getLogger("pixgate.admin").warning("admin login failed from %s", address)
        raise ApiError(
            401,
            f"wrong admin key; the next try is possible in {delay:.0f} s",
            code="invalid_api_key",
            headers={"Retry-After": str(max(1, round(delay)))},
        )
    throttle.succeeded(address)
    if board is not None:
        await board.login_succeeded(address)
    sessions = request.app[SESSIONS]
    cookie = sessions.issue()
    sid = sessions.session_id(cookie)
    assert sid is not None
    response = json_response({"ok": True, "csrf": sessions.csrf(sid)})
    public = settings.public_url or ""
    response.set_cookie(
        COOKIE,
        cookie,
        path="/admin",
        httponly=True,
        samesite="Strict",
        secure=request.secure or public.startswith("https://"),
        max_age=int(sessions.ttl),
    )
    return secured(response)


async def logout(request: web.Request) -> web.StreamResponse:
    sessions = request.app[SESSIONS]
    sid = sessions.session_id(request.cookies.get(COOKIE))
    if sid is not None:
        sessions.revoke(sid)
    response = json_response({"ok": True})
    response.del_cookie(COOKIE, path="/admin")
    return secured(response)


async def session_info(request: web.Request) -> web.StreamResponse:
    sessions = request.app[SESSIONS]
    sid = sessions.session_id(request.cookies.get(COOKIE))
    body: dict[str, Any] = {"via": "bearer" if bearer_token(request) else "session"}
    if sid is not None:
        body["csrf"] = sessions.csrf(sid)
    return secured(json_response(body))


async def overview(request: web.Request) -> web.StreamResponse:
    """Requests, errors and latency: the fleet's with Redis state (panel/fleet.py)."""
    state = request.app[STATE]
    snapshot = state.snapshot
    report = await state.shared.report(snapshot.providers)  # fleet-wide with Redis
    providers = {
        pid: {
            "available": snapshot.usable(p),
            "circuit": report[pid]["circuit"],
            "keys": [row["state"] for row in report[pid]["keys"]],
        }
        for pid, p in sorted(snapshot.providers.items())
    }
    body = {
        "now": time.time(),
        "config_version": snapshot.version,
        **await figures_of(request.app[FLEET], snapshot.version),
        "providers": providers,
    }
    return secured(json_response(body))


async def logs(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the last `replay` lines at `level` or above, then new ones live."""
    buffer = request.app[LOGS]
    if buffer is None:
        raise ApiError(503, "the live log is not running", code="unavailable")
    level = logging.getLevelName(str(request.query.get("level", "INFO")).upper())
    minimum = level if isinstance(level, int) else logging.INFO
    replay = min(MAX_REPLAY, _int(request.query.get("replay"), 200))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    secured(response)
    queue = buffer.subscribe()
    try:
        await response.prepare(request)
        for line in buffer.replay(replay, minimum):
            await response.write(_event(line))
        while True:
            try:
                line = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if line is END:
                break
            if logging.getLevelName(line["level"]) >= minimum:
                await response.write(_event(line))
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        buffer.unsubscribe(queue)
    return response


def _event(line: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(line) + b"\n\n"


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


async def _fields(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        raise bad_request("send a JSON object") from None
    if not isinstance(body, dict):
        raise bad_request("send a JSON object")
    return body


async def explain(request: web.Request) -> web.StreamResponse:
    """A dry run of a request against the config on disk: the plan and the rendered upstream
    requests, keys masked. Nothing is sent."""
    body = await _fields(request)
    size = None
    if body.get("size") not in (None, "", "auto"):
        try:
            size = parse_size(str(body["size"]))
        except ValueError as exc:
            raise bad_request(str(exc), "size") from None
    n = params.n(body)
    if not 1 <= n <= MAX_N:
        raise bad_request(f"n must be between 1 and {MAX_N}", "n")
    job = ImageJob(
        task=str(body.get("task") or "generate"),
        prompt=str(body.get("prompt") or ""),
        model=params.text(body, "model"),
        n=n,
        size=size,
    )
    # the dry-run tools load on the first use of the panel's explain (0.4 MiB of idle RSS)
    from ..tools.explain import explain as dry_run
    from ..tools.explain_output import format_json

    settings = request.app[SETTINGS]
    result = await asyncio.to_thread(dry_run, settings.config_dir, job, env=settings.env)
    return secured(json_response(json.loads(format_json(result))))


async def playground(request: web.Request) -> web.StreamResponse:
    """Generate as a client would, and show what happened: provider, attempts, overhead."""
    body = await _fields(request)
    fields: dict[str, Any] = {k: body[k] for k in ("model", "prompt", "size", "n") if k in body}
    fields["response_format"] = "url"  # stored, so it shows up in the gallery
    started = time.perf_counter()
    job = images.job_from(fields, "generate", prompt=params.prompt(fields))
    outcome = await images.run_job(request, job)
    clock = context(request).wait_clock
    own = time.perf_counter() - started - (clock.waited if clock is not None else 0.0)
    result = images.images_response(outcome)
    result.update(
        provider=outcome.provider,
        route=outcome.route,
        model=outcome.model,
        attempts=outcome.attempts,
        failed=outcome.failed,
        overhead_ms=round(max(0.0, own) * 1000, 2),
    )
    return secured(json_response(result))


async def capture_logs(app: web.Application) -> AsyncIterator[None]:
    """While the app runs, keep the last log lines (masked) for the panel's live log."""
    from .logbuffer import LogBuffer

    mask = masker(app[STATE], app[SETTINGS])
    buffer = LogBuffer(mask, asyncio.get_running_loop())
    app[LOGS] = buffer
    logger = logging.getLogger("pixgate")
    logger.addHandler(buffer)
    try:
        yield
    finally:
        logger.removeHandler(buffer)
        with contextlib.suppress(Exception):
            buffer.close()


async def thumbnail(request: web.Request) -> web.StreamResponse:
    """A small WebP of a stored image, for the gallery."""
    name = request.match_info["name"]
    if not is_name(name):
        raise ApiError(404, "Not found", code="not_found")
    thumbs = request.app[THUMBS]
    storage = request.app[STATE].storage
    thumb = thumbs.get(name)
    if thumb is not None and await storage.meta(name) is None:  # deleted since
        thumbs.forget([name])
        thumb = None
    if thumb is None:
        try:
            data = await storage.read(name, MAX_SOURCE)
        except StorageError as exc:
            raise ApiError(503, f"storage: {exc}", code="storage_unavailable") from None
        if data is None:
            raise ApiError(404, "Not found", code="not_found")
        try:
            thumb = await thumbs.make(name, data)
        except (OSError, ValueError):  # thumbs.render: a decompression bomb is a ValueError
            raise ApiError(415, "not an image Pillow can read", code="not_an_image") from None
    response = web.Response(body=thumb, content_type="image/webp")
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def end_log_streams(app: web.Application) -> None:
    """First on shutdown: the live log's streams never end by themselves."""
    buffer = app.get(LOGS)
    if buffer is not None:
        buffer.end_streams()
