"""A half-open probe always settles: cancelled by the request deadline or by a streaming
client that leaves, it frees the probe slot, so the provider is tried again instead of being
shut out until a restart (a single-target route answered 502 "circuit open" forever)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from engine.api import imagestream
from engine.api.keys import STATE
from tests.e2e.providers import config_dir
from tests.gateway import Gateway, run_gateway
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream

KEY = "sk-proj-" + "K" * 40
ADMIN = "admin-key-0123456789"
COOLDOWN = 0.2


@contextlib.asynccontextmanager
async def single_target(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Any]]:
    """Route `m` with openai as its only target; the circuit opens after one failure, and a
    request may take 1 s (far less than the step's own timeout, as with the shipped 120 s
    sync deadline against openai.yaml's 180 s)."""
    app = fake_openai.create_app(hang_seconds=30)
    async with serve_upstream(app) as base:
        env = {
            "OPENAI_BASE_URL": f"{base}/v1",
            "OPENAI_API_KEYS": KEY,
            "PIXGATE_ADMIN_KEY": ADMIN,
        }
        routes = {
            "routes": {
                "m": {"timeout": "1s", "targets": [{"provider": "openai", "model": "gpt-image-1"}]}
            },
            "providers": {
                "openai": {"circuit_breaker": {"failures": 1, "cooldown": f"{COOLDOWN}s"}}
            },
        }
        async with run_gateway(config_dir(tmp_path, ["openai"], routes), tmp_path / "f", env) as gw:
            yield gw, fake_openai.state(app)


async def admin_openai(gw: Gateway) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gw.url}/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"}) as r,
    ):
        body = await r.json()
    return dict(body["providers"]["openai"])


async def circuit(gw: Gateway) -> str:
    return str((await admin_openai(gw))["circuit"])


async def open_then_cool(gw: Gateway, fake: Any, sdk: openai.AsyncOpenAI) -> None:
    fake.fail_next("server_error")
    with pytest.raises(openai.APIStatusError):
        await sdk.images.generate(model="m", prompt="x")
    assert await circuit(gw) == "open"
    await asyncio.sleep(COOLDOWN * 1.5)
    assert await circuit(gw) == "half_open"


async def test_a_probe_cancelled_by_the_deadline_frees_the_slot(tmp_path: Path) -> None:
    async with (
        single_target(tmp_path) as (gw, fake),
        openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=20) as sdk,
    ):
        await open_then_cool(gw, fake, sdk)
        fake.fail_next("timeout")  # the probe hangs past the route's 1 s deadline
        with pytest.raises(openai.APIStatusError) as err:
            await sdk.images.generate(model="m", prompt="x")
        assert "deadline" in err.value.message
        # The deadline cancelled the probe; the next request is the new probe, and succeeds.
        result = await sdk.images.generate(model="m", prompt="x")
        assert result.data
        assert await circuit(gw) == "closed"


async def test_a_probe_cancelled_by_a_leaving_client_frees_the_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imagestream, "KEEPALIVE_SECONDS", 0.05)
    async with (
        single_target(tmp_path) as (gw, fake),
        openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=20) as sdk,
    ):
        await open_then_cool(gw, fake, sdk)
        fake.fail_next("timeout")
        body = {"model": "m", "prompt": "x", "stream": True}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{gw.v1}/images/generations", json=body) as resp,
        ):
            assert resp.status == 200
            await resp.content.readuntil(b"\n\n")  # the first keep-alive: the probe is running
            resp.close()  # the client leaves mid-probe
        # The stream's next keep-alive finds the client gone and cancels the probe.
        async with asyncio.timeout(10):
            while True:
                try:
                    result = await sdk.images.generate(model="m", prompt="x")
                    break
                except openai.APIStatusError as exc:
                    assert "circuit open" in exc.message
                    await asyncio.sleep(0.05)
        assert result.data
        assert await circuit(gw) == "closed"


def stalling_upstream(release: asyncio.Event) -> web.Application:
    """Answers 200 with a 3 MB JSON body, sends half of it and stalls: the gateway holds a
    key lease, a breaker permit and a large-body slot when the deadline cancels it."""

    async def generations(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = 3 * 1024 * 1024
        await resp.prepare(request)
        await resp.write(b'{"data": [{"b64_json": "' + b"A" * (1536 * 1024))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 30)
        return resp

    app = web.Application()
    app.router.add_post("/v1/images/generations", generations)
    return app


async def test_every_begin_end_pair_settles_when_the_deadline_cancels_mid_body(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    async with serve_upstream(stalling_upstream(release)) as base:
        env = {
            "OPENAI_BASE_URL": f"{base}/v1",
            "OPENAI_API_KEYS": KEY,
            "PIXGATE_ADMIN_KEY": ADMIN,
            "PIXGATE_MAX_LARGE_BODIES": "1",
        }
        routes: dict[str, object] = {
            "routes": {
                "m": {"timeout": "1s", "targets": [{"provider": "openai", "model": "gpt-image-1"}]}
            },
        }
        config = config_dir(tmp_path, ["openai"], routes)
        async with (
            run_gateway(config, tmp_path / "f", env) as gw,
            openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=20) as sdk,
        ):
            gate = gw.app[STATE].body_gate
            for _ in range(gate.limit + 1):  # more than the gate has slots
                with pytest.raises(openai.APIStatusError) as err:
                    await sdk.images.generate(model="m", prompt="x")
                assert "deadline" in err.value.message
            release.set()
            report = await admin_openai(gw)
            assert [k["in_flight"] for k in report["keys"]] == [0]
            assert gate.free == gate.limit
