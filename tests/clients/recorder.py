"""A recording pass-through in front of the gateway: what a client received, byte for byte.

For clients that cannot hand out the raw HTTP answers themselves (LiteLLM returns its own
objects), the test points them at this proxy on loopback; it forwards each request to the
gateway and keeps an exchange (method, URL, status, content type, body text) per answer, in the
shape tests/clients/exchanges.py validates.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from tests.upstreams import serve_upstream

HOP_BY_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection"})
TIMEOUT = aiohttp.ClientTimeout(total=60)
EXCHANGES = web.AppKey("exchanges", list[dict[str, Any]])
TARGET = web.AppKey("target", str)


async def _forward(request: web.Request) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    body = await request.read()
    url = request.app[TARGET] + request.path_qs
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.request(request.method, url, headers=headers, data=body) as answer,
    ):
        payload = await answer.read()
        content_type = answer.headers.get("Content-Type", "")
        status = answer.status
    request.app[EXCHANGES].append(
        {
            "method": request.method,
            "url": url,
            "status": status,
            "content_type": content_type,
            "body": payload.decode("utf-8", "replace"),
        }
    )
    return web.Response(status=status, body=payload, headers={"Content-Type": content_type})


@contextlib.asynccontextmanager
async def recording(target: str) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """(the proxy's base URL, the exchanges it recorded) for a gateway at `target`."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[TARGET] = target
    app[EXCHANGES] = []
    app.router.add_route("*", "/{tail:.*}", _forward)
    async with serve_upstream(app) as base:
        yield base, app[EXCHANGES]
