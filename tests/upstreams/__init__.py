"""Fake upstream provider servers for gateway tests (loopback only, never the internet).

Usage::

    from tests.upstreams import serve_upstream
    from tests.upstreams import openai as fake_openai

    app = fake_openai.create_app(expected_key="sk-test")
    async with serve_upstream(app) as base:          # "http://127.0.0.1:<port>"
        fake = fake_openai.state(app)                # or app[fake_openai.STATE]
        fake.fail_next("rate_limit")
        ...                                          # point the gateway at f"{base}/v1"
        assert fake.last.json["model"] == "gpt-image-1"
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

__all__ = ["serve_upstream", "start"]


async def start(
    app: web.Application, *, shutdown_timeout: float = 2.0
) -> tuple[str, web.AppRunner]:
    """Serve ``app`` on ``127.0.0.1`` at a free port; returns ``(base_url, runner)``.

    Call ``await runner.cleanup()`` when done (stalled ``timeout`` handlers and SSE streams are
    woken by the app's shutdown hook, so cleanup is quick).
    """
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}", runner


@asynccontextmanager
async def serve_upstream(app: web.Application) -> AsyncIterator[str]:
    """``async with serve_upstream(app) as base_url: ...``; shuts the server down afterwards."""
    base_url, runner = await start(app)
    try:
        yield base_url
    finally:
        await runner.cleanup()
