"""Counts are checked before anything is fetched; a request fetches few URLs at a time.

A recording image server on 127.0.0.1 (loopback fetches allowed for the test) counts the
requests it gets and how many were in flight at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp import web

from engine.runtime.images.inputs import FETCH_CONCURRENCY, MAX_INPUT_IMAGES
from tests.gateway import REPO, run_gateway
from tests.security.origins import PNG, serve_on

DEMO_MAX_IMAGES = 8  # providers.d/demo.yaml


class Counter:
    def __init__(self) -> None:
        self.hits = 0
        self.active = 0
        self.peak = 0

    async def slow_png(self, _: web.Request) -> web.Response:
        self.hits += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0.05)  # long enough for the gateway to start the others
            return web.Response(body=PNG, content_type="image/png")
        finally:
            self.active -= 1


async def test_counts_before_fetching_and_bounded_fetches(tmp_path: Path) -> None:
    counter = Counter()
    app = web.Application()
    app.router.add_get("/{n}.png", counter.slow_png)
    env = {"PIXGATE_FETCH_ALLOW_LOOPBACK": "1"}
    async with serve_on(app, "127.0.0.1") as images, aiohttp.ClientSession() as http:
        async with run_gateway(REPO, tmp_path / "files", env) as gw:

            async def blend(count: int, **extra: object) -> tuple[int, dict[str, object]]:
                urls = [{"image_url": f"{images}/{i}.png"} for i in range(count)]
                body = {"model": "demo", "prompt": "x", "images": urls, "size": "64x64", **extra}
                async with http.post(f"{gw.v1}/images/blend", json=body) as resp:
                    return resp.status, await resp.json()

            # More than any request may carry, and more than the model takes: no fetch at all.
            status, body = await blend(100)
            assert status == 400 and "at most" in str(body)
            status, body = await blend(DEMO_MAX_IMAGES + 1)
            assert status == 400 and f"at most {DEMO_MAX_IMAGES} input images" in str(body)
            status, body = await blend(2, n=5)  # demo takes n <= 4
            assert status == 400 and "n must be at most" in str(body)
            assert counter.hits == 0
            # Within the limits: every image is fetched, a few at a time.
            status, body = await blend(DEMO_MAX_IMAGES)
            assert status == 200, body
            assert counter.hits == DEMO_MAX_IMAGES
            assert counter.peak <= FETCH_CONCURRENCY
    assert MAX_INPUT_IMAGES == 16
