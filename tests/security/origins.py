"""Loopback upstreams on several origins that record the headers each request carried.

127.0.0.1:A, localhost:A, 127.0.0.1:B and 127.0.0.2:C are four different origins (scheme,
host, port), even where the same server answers them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from engine.testing.images import make_image

PNG = make_image(8, 8)

Handler = Callable[[web.Request], Any]


@dataclass
class Seen:
    """(origin the client used, path, headers) of every request a server received."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def headers(self, origin: str, path: str) -> list[dict[str, str]]:
        return [h for o, p, h in self.requests if o == origin and p == path]

    def header_values(self, name: str) -> dict[str, list[str | None]]:
        """Per "origin path": the value of header `name` on each request (None: absent)."""
        out: dict[str, list[str | None]] = {}
        for o, p, h in self.requests:
            out.setdefault(f"{o}{p}", []).append(h.get(name.lower()))
        return out


SEEN = web.AppKey("seen", Seen)


def recording_app(routes: dict[str, Handler], seen: Seen) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = f"http://{request.host}"
        seen.requests.append(
            (origin, request.path, {k.lower(): v for k, v in request.headers.items()})
        )
        result: web.StreamResponse = await handler(request)
        return result

    app = web.Application(middlewares=[record])
    app[SEEN] = seen
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    return app


@contextlib.asynccontextmanager
async def serve_on(app: web.Application, host: str) -> AsyncIterator[str]:
    """Serve `app` on `host` at a free port: yields "http://host:port"."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    try:
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def png(_: web.Request) -> web.Response:
    return web.Response(body=PNG, content_type="image/png")
