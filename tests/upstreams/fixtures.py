"""Optional pytest fixture. Enable it from the root ``conftest.py`` with
``pytest_plugins = ["tests.upstreams.fixtures"]``, then::

    async def test_x(upstream_server):
        app = fake_openai.create_app()
        base = await upstream_server(app)   # cleaned up at teardown
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from . import start


@pytest.fixture
async def upstream_server() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> str:
        base_url, runner = await start(app)
        runners.append(runner)
        return base_url

    yield serve
    for runner in reversed(runners):
        await runner.cleanup()
