"""Request id, access log, CORS preflight, client auth, bounds and error shaping for every
request: the gateway's one middleware, which the server runs around aiohttp's routing
(`request_context`), not aiohttp as an app middleware."""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import ClientPayloadError, web

from .. import logline
from ..runtime.lifecycle import bodygate
from ..runtime.lifecycle.overload import Overloaded
from . import bodywatch, bounds, clientnoise, cors
from .auth import authenticate
from .context import CONTEXT, Gateway, RequestContext
from .errors import ApiError, overloaded
from .requestids import new_request_id

access_log = logging.getLogger("pixgate.access")
log = logging.getLogger("pixgate.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
ACCESS_LINE = "request_id=%s method=%s path=%s model=%s provider=%s status=%s duration_ms=%.1f"
CLIENT_CLOSED = 499  # nginx's "client closed request", for the access log


def request_context(
    gateway: Gateway, router: web.UrlDispatcher, routed: Handler
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The gateway's handler around the app's own (`routed`: aiohttp's routing and the
    route's handler), made for its app's parts (no app lookups per request). The server
    calls it (protocolerrors.json_protocol_errors) instead of aiohttp running it as a
    middleware, which cost a partial and a middleware of aiohttp's own per request. So a
    request answered before routing (a CORS preflight, a refused key, a bound) has no
    route: its CORS headers are added here, and its endpoint label is routed for then."""

    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request[CONTEXT] = RequestContext(_request_id(request), gateway)
        started = time.perf_counter()
        status = 500
        overhead: float | None = None
        sent = 0
        error: str | None = None
        path = request.path
        counted = path.startswith("/v1/")
        state = gateway.state
        ticket = state.body_gate.ticket()
        token = bodygate.CURRENT.set(ticket)
        settings = gateway.settings
        watcher = bodywatch.watch(request, settings.body_timeout, settings.body_min_rate)
        admitted: bounds.Admitted | None = None
        routed_yet = False  # the answer is the route's, not one made before routing
        try:
            # A CORS preflight, client auth and the process's bounds, then the handler: calls in
            # this one frame rather than a middleware or coroutine each (a waiting request holds
            # fewer frames); whatever they raise becomes an OpenAI error.
            try:
                preflight = cors.preflight(request, ctx)
                if preflight is not None:
                    response: web.StreamResponse = preflight
                else:
                    authenticate(request, ctx)
                    # after auth: a refused key never counts
                    admitted = bounds.admit(request, gateway)
                    if admitted is not None and not admitted.took_body():
                        await admitted.wait_for_body(request)
                    routed_yet = True
                    response = await routed(request)
                    headers = ctx.rate_headers  # a limited client's x-ratelimit-* headers
                    if headers and not response.prepared:  # (streams set them before they start)
                        response.headers.update(headers)
            except Exception as exc:
                shaped = _shaped(request, ctx, exc)
                if shaped is None:
                    raise
                response = shaped
            finally:
                if admitted is not None:
                    admitted.close()
            status = response.status
            if not response.prepared:  # streams sent their headers already
                response.headers["x-request-id"] = ctx.id
                overhead = _overhead(ctx, started)
                response.headers["x-pixgate-overhead-ms"] = f"{overhead * 1000:.2f}"
                if not routed_yet:  # (a route's answer gets them as aiohttp prepares it)
                    await cors.on_prepare(request, response)
                if ticket.held:  # write the big answer while this request still holds its slot
                    await _write_now(request, response)
            sent = response.body_length if response.prepared else len(_body(response))
            if status >= 400:
                error = _error_message(response)
            return response
        finally:
            if watcher is not None:
                watcher.stop()
            ticket.release()
            bodygate.CURRENT.reset(token)
            elapsed = time.perf_counter() - started  # one clock read for metrics and the log
            if counted:
                route, model = _route_model(ctx)
                endpoint = (
                    _endpoint(request.match_info)
                    if routed_yet
                    else _endpoint(await router.resolve(request))
                )
                gateway.metrics.request(endpoint, route, model, status, elapsed, overhead, sent)
                recent = gateway.recent
                if recent is not None:  # the admin panel's overview
                    recent.record(route, ctx.provider or "-", status, elapsed, overhead, error)
            if not path.startswith("/_demo/"):
                logline.info(
                    access_log,
                    ACCESS_LINE,
                    ctx.id,
                    request.method,
                    path,
                    ctx.model or "-",
                    ctx.provider or "-",
                    status,
                    elapsed * 1000,
                )

    return handle


def _request_id(request: web.Request) -> str:
    """The client's x-request-id when it is a safe one, else a new id."""
    incoming = request.headers.get("x-request-id", "")
    return incoming if incoming and _SAFE_ID.match(incoming) else new_request_id()


def _overhead(ctx: RequestContext, started: float) -> float:
    """Seconds of the request's own time so far, without its waits for upstreams."""
    clock = ctx.wait_clock
    own = time.perf_counter() - started - (clock.waited if clock is not None else 0.0)
    return max(0.0, own)


def _body(response: web.StreamResponse) -> bytes:
    body = response.body if isinstance(response, web.Response) else None
    return body if isinstance(body, bytes) else b""


def _error_message(response: web.StreamResponse) -> str | None:
    """The message of an OpenAI-shaped error body (masked already), for the panel."""
    body = _body(response)
    if not body or len(body) > 65536:
        return None
    try:
        message = orjson.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
    return message if isinstance(message, str) else None


def _endpoint(match_info: web.UrlMappingMatchInfo) -> str:
    """The route's path template (`/v1/models/{id}`): bounded, never the client's path."""
    resource = match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _route_model(ctx: RequestContext) -> tuple[str, str]:
    """(route, model) labels: only names the live config knows, else "other" (a client may
    send any string as `model`)."""
    model = ctx.model
    if model is None:
        return "-", "-"
    snapshot = ctx.gateway.state.snapshot
    routes = snapshot.routes
    route = routes.aliases.get(model, model)
    if route in routes.routes:
        return route, model
    if model in snapshot.direct:
        return model, model
    return "other", "other"


async def _write_now(request: web.Request, response: web.StreamResponse) -> None:
    """Write a big answer, then let its body go while the request still holds its slot. When
    the client has left, the failed write's traceback holds the body in its frames, and the
    exception sits in a reference cycle until the collector runs (under load, 100 MiB late)."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError as exc:
        traceback.clear_frames(exc.__traceback__)
        # aiohttp's own write_eof after this meets the closed connection and lets it be
    finally:
        # Written or not, the megabytes go now: aiohttp keeps a keep-alive connection's last
        # response until the next request on it, so 200 idle clients held 200 answers.
        if isinstance(response, web.Response):
            response.body = None


def _shaped(request: web.Request, ctx: RequestContext, exc: Exception) -> web.StreamResponse | None:
    """The OpenAI-shaped answer for what the request's way to its handler raised, or None
    when it is to go on up (an HTTPException below 400). Called in the `except` block: an
    unexpected error is logged with its traceback."""
    if isinstance(exc, bounds.Refused):
        return exc.response
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, Overloaded):  # an input fetch that found no bytes free
        return overloaded(exc).response()
    if isinstance(exc, bodywatch.BodyTimeout):
        error = ApiError(408, f"Request body too slow: {exc.reason}", code="request_timeout")
        shaped = error.response()
        shaped.force_close()  # the rest of the body is not coming: free the connection
        return shaped
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = ctx.gateway.settings.max_body
        return ApiError(
            413, f"request body is larger than the {limit} byte limit", code="request_too_large"
        ).response()
    if isinstance(exc, web.HTTPException):
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
        return None
    if _client_left(request, exc):
        clientnoise.note(
            logging.INFO,
            "client left mid-request request_id=%s method=%s path=%s: %s",
            ctx.id, request.method, request.path, clientnoise.first_line(exc),
        )  # fmt: skip
        return web.Response(status=CLIENT_CLOSED)  # never delivered; for the access log
    log.exception("unhandled error request_id=%s", ctx.id)
    return ApiError(
        500,
        "internal error in the gateway; the request id identifies it in the logs",
        type="server_error",
        code="internal_error",
    ).response()


def _client_left(request: web.Request, exc: Exception) -> bool:
    """A connection error on a connection that is gone: the client left (mid-upload, say)."""
    if not isinstance(exc, ConnectionError | ClientPayloadError):
        return False
    transport = request.transport
    return transport is None or transport.is_closing()
