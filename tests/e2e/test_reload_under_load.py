"""Reload under load: 50 config rewrites while ~2,000 requests run; nothing fails."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp

from tests.e2e.test_reload import ADMIN, make_config, models, write_routes
from tests.gateway import Gateway, run_gateway

REQUESTS = 2000
WORKERS = 4
PACE = 0.035  # seconds between one worker's requests: about 100 requests/s in all
REWRITES = 50
PERIOD = 0.4  # one rewrite every 0.4 s: 50 over about 20 s


async def load(
    http: aiohttp.ClientSession,
    gw: Gateway,
    stop: asyncio.Event,
    seen: Counter[int],
    budget: list[int],
) -> None:
    body = {"model": "demo", "prompt": "under load", "size": "64x64", "response_format": "b64_json"}
    while not stop.is_set() and budget[0] > 0:
        budget[0] -= 1
        async with http.post(f"{gw.v1}/images/generations", json=body) as resp:
            await resp.read()
            seen[resp.status] += 1
        await asyncio.sleep(PACE)


async def visible(
    http: aiohttp.ClientSession, gw: Gateway, name: str, present: bool = True
) -> float:
    started = time.monotonic()
    while (name in await models(http, gw)) != present:
        assert time.monotonic() - started < 2.0, (
            f"{name} not {'shown' if present else 'gone'} in 2s"
        )
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_fifty_rewrites_under_load(tmp_path: Path) -> None:
    root = make_config(tmp_path / "config")
    extra_provider = (
        (root / "providers.d" / "demo.yaml").read_text().replace("id: demo", "id: extra")
    )
    async with run_gateway(root, tmp_path / "f", {"PIXGATE_ADMIN_KEY": ADMIN}, watch=True) as gw:
        connector = aiohttp.TCPConnector(limit=WORKERS * 2)
        async with aiohttp.ClientSession(connector=connector) as http:
            stop, seen, budget = asyncio.Event(), Counter[int](), [REQUESTS]
            workers = [
                asyncio.create_task(load(http, gw, stop, seen, budget)) for _ in range(WORKERS)
            ]
            delays: list[float] = []
            never_seen = True
            try:
                for i in range(REWRITES):
                    next_at = time.monotonic() + PERIOD
                    if i == 20:  # invalid: names an unknown provider; must never be served
                        (root / "routes.yaml").write_text(
                            "routes:\n  demo: {targets: [{provider: demo, model: demo-v1}]}\n"
                            "  never: {targets: [{provider: ghost, model: x}]}\n"
                        )
                        await asyncio.sleep(0.8)
                        never_seen = never_seen and "never" not in await models(http, gw)
                        continue
                    if i == 30:  # a provider file appears, with a route using it
                        (root / "providers.d" / "extra.yaml").write_text(extra_provider)
                        write_routes(
                            root,
                            {},
                            extra_routes={
                                "extra": {"targets": [{"provider": "extra", "model": "demo-v1"}]}
                            },
                        )
                        delays.append(await visible(http, gw, "extra"))
                        continue
                    if i == 40:  # ... and goes away again
                        write_routes(root, {})
                        (root / "providers.d" / "extra.yaml").unlink()
                        delays.append(await visible(http, gw, "extra", present=False))
                        continue
                    write_routes(root, {f"v{i}": "demo"})
                    delays.append(await visible(http, gw, f"v{i}"))
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            finally:
                stop.set()
                await asyncio.gather(*workers)
            headers = {"Authorization": f"Bearer {ADMIN}"}
            async with http.get(f"{gw.url}/admin/config", headers=headers) as resp:
                cfg = await resp.json()
    assert never_seen
    assert (
        cfg["reloads"]["failed"] >= 1 and cfg["last_rejected"]["diagnostics"][0]["code"] == "E301"
    )
    assert len(delays) == REWRITES - 1 and max(delays) < 2.0
    assert sum(seen.values()) >= REQUESTS * 0.75, seen  # the load really ran alongside
    assert set(seen) == {200}, seen  # zero failed requests
