"""PIXGATE_UPSTREAM_CONNECTIONS[_PER_HOST] cap the connections the gateway opens to upstreams:
a request beyond the cap waits for a connection instead of reaching the provider, and `0`
lifts a cap (the default of 256 per host would hold back thousands of long requests)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from aiohttp import web

from engine.settings import Settings
from tests.e2e.providers import config_dir, single
from tests.gateway import run_gateway
from tests.upstreams import serve_upstream
from tests.upstreams.common import image_bytes

OPENAI_KEY = "sk-proj-" + "C" * 40
REQUESTS = 4


class HeldUpstream:
    """OpenAI's image generations endpoint that holds every request until `release` is set,
    counting how many it holds at once."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.release = asyncio.Event()
        self.arrived = asyncio.Condition()
        self.png = base64.b64encode(image_bytes("png", 8, 8)).decode()

    async def generations(self, request: web.Request) -> web.Response:
        await request.read()
        self.open += 1
        self.peak = max(self.peak, self.open)
        async with self.arrived:
            self.arrived.notify_all()
        try:
            await asyncio.wait_for(self.release.wait(), timeout=20)
        finally:
            self.open -= 1
        return web.json_response({"created": 1, "data": [{"b64_json": self.png}]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/images/generations", self.generations)
        return app


@pytest.fixture
async def held() -> AsyncIterator[tuple[HeldUpstream, str]]:
    upstream = HeldUpstream()
    async with serve_upstream(upstream.app()) as base:
        yield upstream, base
        upstream.release.set()


async def _peak_with(
    env: dict[str, str], cap: int, held: tuple[HeldUpstream, str], tmp: Path
) -> int:
    """REQUESTS requests at once through a gateway with `env`: how many the upstream held at
    once (waiting until it holds `cap`, then a little longer) before they were let go; all
    must then succeed."""
    upstream, base = held
    env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY, **env}
    config = config_dir(tmp, ["openai"], single("openai", "gpt-image-1"))
    async with (
        run_gateway(config, tmp / "files", env) as gw,
        openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30) as sdk,
    ):
        calls = [
            asyncio.create_task(sdk.images.generate(model="m", prompt="a lighthouse"))
            for _ in range(REQUESTS)
        ]
        async with asyncio.timeout(10), upstream.arrived:
            await upstream.arrived.wait_for(lambda: upstream.open >= cap)
        await asyncio.sleep(0.3)  # room for a request beyond the cap to (wrongly) arrive
        peak = upstream.peak
        upstream.release.set()
        answers = await asyncio.gather(*calls)
    assert all(a.data and a.data[0].b64_json for a in answers)
    return peak


async def test_per_host_cap_holds_requests_beyond_it(
    held: tuple[HeldUpstream, str], tmp_path: Path
) -> None:
    env = {"PIXGATE_UPSTREAM_CONNECTIONS_PER_HOST": "2"}
    assert await _peak_with(env, 2, held, tmp_path) == 2


async def test_zero_lifts_the_per_host_cap_and_the_total_still_holds(
    held: tuple[HeldUpstream, str], tmp_path: Path
) -> None:
    env = {
        "PIXGATE_UPSTREAM_CONNECTIONS_PER_HOST": "0",
        "PIXGATE_UPSTREAM_CONNECTIONS": "3",
    }
    assert await _peak_with(env, 3, held, tmp_path) == 3


def test_defaults_and_bad_values() -> None:
    settings = Settings.from_env({})
    assert (settings.upstream_connections, settings.upstream_connections_per_host) == (1024, 256)
    lifted = Settings.from_env({"PIXGATE_UPSTREAM_CONNECTIONS_PER_HOST": "0"})
    assert lifted.upstream_connections_per_host == 0
    with pytest.raises(ValueError, match="PIXGATE_UPSTREAM_CONNECTIONS must be"):
        Settings.from_env({"PIXGATE_UPSTREAM_CONNECTIONS": "-1"})
