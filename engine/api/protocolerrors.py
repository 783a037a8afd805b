"""OpenAI-shaped errors for requests aiohttp cannot parse (a bad request line, bad headers).

aiohttp answers those itself, before any middleware runs, from `RequestHandler.handle_error`,
in plain text. `json_protocol_errors(app)` makes every runner of `app` (`web.run_app`, the
workers' `AppRunner`, tests) serve with a handler whose `handle_error` answers
`{"error": {...}}` instead. aiohttp offers no public hook for this: the app's server factory
is wrapped, and tests/security/test_malformed_http.py breaks if aiohttp changes it. The
logging stays aiohttp's (quieted by clientnoise.py), and so does closing the connection.
The same server hands every request to the gateway's handler (middleware.py), which calls
the app's own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from .errors import ApiError

_ServerHandler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]


class JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, with OpenAI-shaped protocol errors; it also reads the
    connection's local address once (`local_address`), for every request on it to use."""

    local_address: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # (a getsockname each time it is asked: about 8,000 instructions, per request before)
        self.local_address = socket_address(transport.get_extra_info("sockname"))

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own: logs, and raises when part of a response went out already
        super().handle_error(request, status, exc, message)
        if status >= 500:
            error = ApiError(status, "internal error in the gateway", type="server_error")
        else:
            reason = type(exc).__name__ if exc is not None else "unparseable"
            error = ApiError(status, f"malformed HTTP request ({reason})", code="malformed_request")
        response = error.response()
        response.force_close()
        return response


class JsonErrorServer(Server):
    """aiohttp's Server, making JsonErrorHandler connections."""

    def __call__(self) -> RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return JsonErrorHandler(self, loop=self._loop, **kwargs)


def socket_address(sockname: Any) -> tuple[str, int] | None:
    """(host, port) of a `sockname` extra info; None for what is not an IP socket's."""
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return None


def json_protocol_errors(
    app: web.Application, around: Callable[[Handler], Handler] | None = None
) -> None:
    """Serve `app` through JsonErrorServer, whichever runner starts it; with `around`, the
    server hands each request to `around(the app's own handler)` (the gateway's handler,
    middleware.py)."""
    make = app._make_handler

    def make_handler(**kwargs: Any) -> Server:
        made = make(**kwargs)
        handler = made.request_handler
        if around is not None:  # (the app's request factory makes a web.Request of each)
            handler = cast(_ServerHandler, around(handler))
        return JsonErrorServer(
            handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )

    app._make_handler = make_handler  # type: ignore[method-assign]
