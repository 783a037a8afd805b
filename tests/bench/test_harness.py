"""The bench harness's own logic on real sockets, at toy sizes (no timing is asserted): the
assembled config loads every shipped provider, the floor's download flow, the test upstream's
long polling jobs and open-request count, and the load generator's rounds and ramp."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bench import heavy, load, nullproxy, run, upstream
from bench.scenarios import SMALL
from engine.config.loader import build_snapshot
from tests.gateway import free_port
from tests.upstreams import start

REPO = Path(__file__).resolve().parents[2]


def test_the_bench_config_loads_every_shipped_provider_with_a_key(tmp_path: Path) -> None:
    config = run.assemble_config(REPO, tmp_path / "config")
    shipped = {p.stem for p in (REPO / "providers.d").glob("*.yaml")}
    env = {**run.dummy_keys(config), "OPENAI_API_KEYS": "sk-proj-bench" + "0" * 24}
    assert "OPENAI_API_KEYS" in env and "REPLICATE_API_KEYS" in env
    result = build_snapshot(config, env)
    assert result.snapshot is not None, [d.format() for d in result.diagnostics.sorted()]
    loaded = set(result.snapshot.providers)
    assert shipped <= loaded and {"bench-poll", "bench-poll-long"} <= loaded
    assert {"long", "store", "redis", "download"} <= set(result.snapshot.providers["openai"].models)
    assert result.snapshot.routes.policies.get("openai") is None  # no limit but in `redis`


def test_the_redis_scenario_config_limits_the_openai_key(tmp_path: Path) -> None:
    """Every attempt of the `redis` cells takes a lease (a Redis call per attempt)."""
    base = run.assemble_config(REPO, tmp_path / "config")
    config = heavy.limited_config(base, tmp_path / "config-limited")
    env = {**run.dummy_keys(config), "OPENAI_API_KEYS": "sk-proj-bench" + "0" * 24}
    result = build_snapshot(config, env)
    assert result.snapshot is not None, [d.format() for d in result.diagnostics.sorted()]
    limit = result.snapshot.routes.policies["openai"].max_concurrency_per_key
    assert limit == heavy.REDIS_KEY_LIMIT
    assert "redis" in result.snapshot.routes.routes


@pytest.fixture
async def bench_upstream(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """bench/upstream.py on a free port; it names its own URL in its answers."""
    monkeypatch.setattr(upstream, "SLOW_DELAY", 0.2)
    port = free_port()
    runner = web.AppRunner(upstream.Upstream(f"http://127.0.0.1:{port}").app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_floor_downloads_the_named_image_and_answers_it_as_b64(bench_upstream: str) -> None:
    base, runner = await start(nullproxy.make_app(bench_upstream))
    try:
        async with aiohttp.ClientSession() as http:
            body = {"model": "download", "prompt": "p", "size": "1024x1024"}
            async with http.post(f"{base}/v1/images/generations", json=body) as resp:
                answer = await resp.json()
            async with http.get(f"{bench_upstream}/files/big.png") as resp:
                image = await resp.read()
    finally:
        await runner.cleanup()
    assert base64.b64decode(answer["data"][0]["b64_json"]) == image
    assert len(image) > 1_000_000


async def test_upstream_counts_open_requests_and_keeps_long_jobs_running(
    bench_upstream: str,
) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{bench_upstream}/v1/images/generations"
        body = {"model": "slow", "prompt": "p"}
        answers = await asyncio.gather(*(http.post(url, json=body) for _ in range(3)))
        assert [a.status for a in answers] == [200, 200, 200]
        async with http.get(f"{bench_upstream}/health?reset=1") as resp:
            assert (await resp.json())["peak_open_requests"] == 3
        async with http.get(f"{bench_upstream}/health") as resp:
            assert (await resp.json())["peak_open_requests"] == 0  # reset
        tasks = f"{bench_upstream}/v1/poll/tasks"
        async with http.post(tasks, json={"model": "poll-long"}) as resp:
            task = (await resp.json())["task_id"]
        async with http.get(f"{tasks}/{task}") as resp:
            assert (await resp.json())["status"] == "running"  # done only after 30 s
        async with http.post(tasks, json={"model": "nope"}) as resp:
            assert resp.status == 404


async def test_load_generator_rounds_and_ramp(bench_upstream: str, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(SMALL.body())
    result = await asyncio.to_thread(
        load.run_python,
        f"{bench_upstream}/v1/images/generations",
        body,
        {"Content-Type": "application/json"},
        10,
        0,
        None,
        batch=10,
        rounds=3,
        ramp_s=0.1,
    )
    assert (result.requests, result.errors, result.detail["rounds"]) == (30, 0, 3)
    assert 1 <= result.detail["peak_open"] <= 10
    assert [load.start_offset(i, 4, 2.0) for i in range(4)] == [0.0, 0.5, 1.0, 1.5]
    json.dumps(result.as_dict())  # what the harness stores
