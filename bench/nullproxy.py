"""The floor: the least an aiohttp gateway can do per request (`python -m bench.nullproxy`).

It reads the client's body, POSTs it unchanged to the upstream through one shared
ClientSession (same connector limits as pixgate), and returns the upstream's body. No routing,
templates, validation or logging. Run on the same event loop as pixgate (`--uvloop`), it
shows how much of pixgate's cost per request is aiohttp itself and how much is pixgate's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def _session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=1024, limit_per_host=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        app[SESSION] = session
        yield


async def forward(request: web.Request) -> web.Response:
    body = await request.read()
    async with request.app[SESSION].post(
        request.app[UPSTREAM] + "/v1/images/generations",
        data=body,
        headers={"Content-Type": "application/json"},
    ) as resp:
        payload = await resp.read()
        return web.Response(status=resp.status, body=payload, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/images/generations", forward)
    return app


async def serve(upstream: str, port: int) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="minimal aiohttp pass-through proxy (the floor)")
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8901")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="use uvloop (default: asyncio)")
    args = parser.parse_args(argv)
    if not args.upstream.startswith(("http://127.0.0.1", "http://localhost")):
        print("bench.nullproxy: loopback upstreams only", file=sys.stderr)
        return 2
    runner: Callable[..., object] = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.upstream, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
