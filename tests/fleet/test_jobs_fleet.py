"""Two gateways sharing a real Redis: a job submitted on one is polled and listed on the other."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from tests.e2e.jobs_upstream import PROVIDER, UP, Upstream, _submit, _task
from tests.gateway import run_gateway
from tests.services.redis import redis_server
from tests.upstreams import serve_upstream


async def test_submit_on_a_poll_and_list_on_b(tmp_path: Path) -> None:
    root = tmp_path / "config"
    (root / "providers.d").mkdir(parents=True)
    (root / "providers.d" / "slow.yaml").write_text(yaml.safe_dump(PROVIDER))
    routes = {"demo": False, "routes": {"slow": {"targets": [{"provider": "slow", "model": "m"}]}}}
    (root / "routes.yaml").write_text(yaml.safe_dump(routes))
    app = web.Application()
    app[UP] = Upstream()
    app.router.add_post("/submit", _submit)
    app.router.add_get("/tasks/{id}", _task)
    with redis_server(tmp_path) as redis:
        async with serve_upstream(app) as base:
            env = {
                "SLOW_BASE_URL": base,
                "PIXGATE_POLL_INTERVAL_SCALE": "1",
                "PIXGATE_API_KEYS": "key-a",
                "PIXGATE_REDIS_URL": redis.url,
                "PIXGATE_STATE_SECRET": "s" * 32,
            }
            async with (
                run_gateway(root, tmp_path / "fa", env) as a,
                run_gateway(root, tmp_path / "fb", env) as b,
                aiohttp.ClientSession(headers={"Authorization": "Bearer key-a"}) as http,
            ):
                body = {"model": "slow", "prompt": "x"}
                url = a.v1 + "/images/generations?async=true"
                async with http.post(url, json=body) as resp:
                    assert resp.status == 202
                    job = await resp.json()
                app[UP].done.set()
                async with http.get(b.v1 + f"/images/jobs/{job['id']}?wait=10s") as resp:
                    polled = await resp.json()
                assert polled["status"] == "succeeded", polled
                async with http.get(b.v1 + "/images/jobs") as resp:
                    assert [j["id"] for j in (await resp.json())["data"]] == [job["id"]]
    assert app[UP].submits == 1
