"""Reload under load: 50 config rewrites while requests run all along; nothing fails.

No speed is asserted (a loaded CI machine is slow): every wait is bounded by a generous
SETTLE, and the load is proven to run alongside by construction: after each rewrite, the test
waits until more requests have completed before it writes the next one."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.test_reload import ADMIN, make_config, models, write_routes
from tests.gateway import Gateway, run_gateway

ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
WORKERS = 4
PACE = 0.035  # seconds between one worker's requests: about 100 requests/s in all
REWRITES = 50
PERIOD = 0.4  # one rewrite every 0.4 s at most: 50 over about 20 s
BETWEEN = 5  # requests completed after each rewrite before the next one
SETTLE = 60.0  # bound of every wait: a failure, never a speed threshold


async def load(
    http: aiohttp.ClientSession,
    gw: Gateway,
    stop: asyncio.Event,
    seen: Counter[int],
) -> None:
    body = {"model": "demo", "prompt": "under load", "size": "64x64", "response_format": "b64_json"}
    while not stop.is_set():
        async with http.post(f"{gw.v1}/images/generations", json=body) as resp:
            await resp.read()
            seen[resp.status] += 1
        await asyncio.sleep(PACE)


async def visible(
    http: aiohttp.ClientSession, gw: Gateway, name: str, present: bool = True
) -> float:
    started = time.monotonic()
    while (name in await models(http, gw)) != present:
        assert time.monotonic() - started < SETTLE, (
            f"{name} not {'shown' if present else 'gone'} in {SETTLE:g}s"
        )
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def progressed(seen: Counter[int], since: int, workers: list[asyncio.Task[None]]) -> None:
    """Wait until BETWEEN more requests have completed than `since` (the load runs on)."""
    started = time.monotonic()
    while sum(seen.values()) < since + BETWEEN:
        for worker in workers:
            if worker.done():
                worker.result()  # a worker that failed: its error, not a timeout
        assert time.monotonic() - started < SETTLE, f"no load for {SETTLE:g}s: {seen}"
        await asyncio.sleep(0.01)


async def admin_config(http: aiohttp.ClientSession, gw: Gateway) -> dict[str, Any]:
    async with http.get(f"{gw.url}/admin/config", headers=ADMIN_HEADERS) as resp:
        return dict(await resp.json())


async def test_fifty_rewrites_under_load(tmp_path: Path) -> None:
    root = make_config(tmp_path / "config")
    extra_provider = (
        (root / "providers.d" / "demo.yaml").read_text().replace("id: demo", "id: extra")
    )
    async with run_gateway(root, tmp_path / "f", {"PIXGATE_ADMIN_KEY": ADMIN}, watch=True) as gw:
        connector = aiohttp.TCPConnector(limit=WORKERS * 2)
        timeout = aiohttp.ClientTimeout(total=SETTLE)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            stop, seen = asyncio.Event(), Counter[int]()
            workers = [asyncio.create_task(load(http, gw, stop, seen)) for _ in range(WORKERS)]
            delays: list[float] = []
            never_seen = True
            try:
                for i in range(REWRITES):
                    next_at = time.monotonic() + PERIOD
                    done = sum(seen.values())
                    if i == 20:  # invalid: names an unknown provider; must never be served
                        tmp = root / ".routes.yaml.tmp"  # saved whole, as write_routes does
                        tmp.write_text(
                            "routes:\n  demo: {targets: [{provider: demo, model: demo-v1}]}\n"
                            "  never: {targets: [{provider: ghost, model: x}]}\n"
                        )
                        os.replace(tmp, root / "routes.yaml")
                        started = time.monotonic()  # until the watcher has tried and refused it
                        while (await admin_config(http, gw))["reloads"]["failed"] < 1:
                            assert time.monotonic() - started < SETTLE, "invalid config unseen"
                            await asyncio.sleep(0.05)
                        never_seen = never_seen and "never" not in await models(http, gw)
                        await progressed(seen, done, workers)
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
                        await progressed(seen, done, workers)
                        continue
                    if i == 40:  # ... and goes away again
                        write_routes(root, {})
                        (root / "providers.d" / "extra.yaml").unlink()
                        delays.append(await visible(http, gw, "extra", present=False))
                        await progressed(seen, done, workers)
                        continue
                    write_routes(root, {f"v{i}": "demo"})
                    delays.append(await visible(http, gw, f"v{i}"))
                    await progressed(seen, done, workers)
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            finally:
                stop.set()
                await asyncio.gather(*workers)
            cfg = await admin_config(http, gw)
    assert never_seen
    assert (
        cfg["reloads"]["failed"] >= 1 and cfg["last_rejected"]["diagnostics"][0]["code"] == "E301"
    )
    assert len(delays) == REWRITES - 1  # each rewrite was served (within SETTLE)
    assert sum(seen.values()) >= REWRITES * BETWEEN, seen  # the load ran alongside every one
    assert set(seen) == {200}, seen  # zero failed requests
