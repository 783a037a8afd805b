"""Memory under load is bounded by configuration, not by the number of clients (issue 12,
item 5): at most PIXGATE_MAX_IN_FLIGHT API requests are served at once, and request bodies
and fetched input images share PIXGATE_MAX_BUFFERED_BYTES. Beyond either a client gets an
OpenAI-shaped 503 `overloaded` with Retry-After, while /health, /metrics and /admin still
answer; every reservation is given back however its request ends (a client that leaves
mid-upload, or while it waits for bytes)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from engine.api.keys import LIMITS, STATE
from engine.runtime.lifecycle.overload import ByteBudget, Overloaded
from tests.e2e.providers import config_dir, single
from tests.gateway import Gateway, run_gateway
from tests.upstreams import serve_upstream
from tests.upstreams.common import png_bytes

KEY = "sk-proj-" + "O" * 40
ADMIN = "admin-key-0123456789"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
GENERATE = {"model": "m", "prompt": "x", "response_format": "b64_json"}


class Held:
    """An OpenAI images upstream whose answers wait until `go` is set (at most 30 s);
    `pad` makes its image that many bytes (a large answer)."""

    def __init__(self, pad: int = 0) -> None:
        self.arrived = 0
        self.go = asyncio.Event()
        self.image = base64.b64encode(png_bytes(8, 8).ljust(pad, b"\0")).decode()

    async def generations(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrived += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await self.go.wait()
        return web.json_response({"created": int(time.time()), "data": [{"b64_json": self.image}]})


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, env: dict[str, str], pad: int = 0
) -> AsyncIterator[tuple[Gateway, Held]]:
    held = Held(pad)
    app = web.Application()
    app.router.add_post("/v1/images/generations", held.generations)
    async with serve_upstream(app) as base:
        env = {
            "OPENAI_BASE_URL": f"{base}/v1",
            "OPENAI_API_KEYS": KEY,
            "PIXGATE_ADMIN_KEY": ADMIN,
            **env,
        }
        root = config_dir(tmp_path, ["openai"], single("openai", "gpt-image-1"))
        async with run_gateway(root, tmp_path / "f", env) as gw:
            try:
                yield gw, held
            finally:
                held.go.set()


async def until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Wait (bounded) for a condition the gateway reaches on its own."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:  # noqa: ASYNC110 (state, not an event)
        await asyncio.sleep(0.01)
    assert check(), what


def assert_overloaded(status: int, headers: Any, body: dict[str, Any]) -> None:
    assert status == 503
    assert headers["Retry-After"] == "1"
    error = body["error"]
    assert error["type"] == "server_error" and error["code"] == "overloaded", error
    assert error["message"] and error["param"] is None


async def operator_paths_answer(http: aiohttp.ClientSession, gw: Gateway) -> str:
    """/health, /admin/health and /metrics answer on a saturated gateway; the scrape."""
    async with http.get(f"{gw.url}/health") as resp:
        assert resp.status == 200
    async with http.get(f"{gw.url}/admin/health", headers=ADMIN_HEADERS) as resp:
        assert resp.status == 200
    async with http.get(f"{gw.url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_beyond_max_in_flight_a_503_and_the_operator_still_gets_in(tmp_path: Path) -> None:
    async with (
        gateway(tmp_path, {"PIXGATE_MAX_IN_FLIGHT": "3"}) as (gw, held),
        openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=60) as sdk,
        aiohttp.ClientSession() as http,
    ):
        limits = gw.app[LIMITS]
        busy = [asyncio.ensure_future(sdk.images.generate(model="m", prompt="x")) for _ in "abc"]
        await until(lambda: held.arrived == 3, "three requests at the upstream")
        async with http.post(f"{gw.v1}/images/generations", json=GENERATE) as resp:
            assert_overloaded(resp.status, resp.headers, await resp.json())
        with pytest.raises(openai.InternalServerError) as refused:  # the SDK's view of it
            await sdk.images.generate(model="m", prompt="x")
        assert refused.value.status_code == 503
        scrape = await operator_paths_answer(http, gw)
        assert 'pixgate_overload_refusals_total{reason="in_flight"} 2.0' in scrape
        assert "pixgate_in_flight_limit 3.0" in scrape
        assert "pixgate_in_flight_requests 3.0" in scrape
        held.go.set()
        assert all(r.data and r.data[0].b64_json for r in await asyncio.gather(*busy))
        assert limits.in_flight.count == 0
        async with http.post(f"{gw.v1}/images/generations", json=GENERATE) as resp:
            assert resp.status == 200  # room again


async def half_upload(gw: Gateway, length: int) -> asyncio.StreamWriter:
    """A client that declares `length` body bytes, sends a few, and stalls."""
    host, port = gw.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/images/generations HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{" % length
    )
    await writer.drain()
    return writer


BUDGET = {
    "PIXGATE_MAX_BODY_BYTES": "200000",
    "PIXGATE_FETCH_MAX_BYTES": "200000",
    "PIXGATE_MAX_BUFFERED_BYTES": "300000",
    "PIXGATE_OVERLOAD_WAIT": "0.3",
    "PIXGATE_FETCH_ALLOW_LOOPBACK": "1",
}


@contextlib.asynccontextmanager
async def image_host(size: int) -> AsyncIterator[str]:
    """Serves one PNG of about `size` bytes (padded after its end, still a PNG by its magic)."""
    data = png_bytes(8, 8).ljust(size, b"\0")

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=data, content_type="image/png")

    app = web.Application()
    app.router.add_get("/big.png", image)
    async with serve_upstream(app) as base:
        yield f"{base}/big.png"


async def test_bodies_and_fetched_inputs_share_a_byte_budget(tmp_path: Path) -> None:
    padded = {**GENERATE, "user": "u" * 150_000}  # a 150 kB body
    async with (
        gateway(tmp_path, BUDGET) as (gw, _held),
        image_host(150_000) as image_url,
        aiohttp.ClientSession() as http,
    ):
        budget = gw.app[LIMITS].buffered
        stalled = await half_upload(gw, 200_000)
        await until(lambda: budget.used == 200_000, "the declared body reserved")
        async with http.post(f"{gw.v1}/images/generations", json=padded) as resp:
            assert_overloaded(resp.status, resp.headers, await resp.json())
        edit = {"model": "m", "prompt": "x", "images": [{"image_url": image_url}]}
        async with http.post(f"{gw.v1}/images/edits", json=edit) as resp:  # a small body ...
            assert_overloaded(resp.status, resp.headers, await resp.json())  # ... its fetch
        scrape = await operator_paths_answer(http, gw)
        assert 'pixgate_overload_refusals_total{reason="buffered_bytes"} 2.0' in scrape
        assert "pixgate_buffered_bytes 200000.0" in scrape
        assert "pixgate_buffered_bytes_limit 300000.0" in scrape
        stalled.close()  # leaves mid-upload: its reservation comes back
        await until(lambda: budget.used == 0, "the stalled upload's bytes given back")
        _held.go.set()
        async with http.post(f"{gw.v1}/images/generations", json=padded) as resp:
            assert resp.status == 200
        assert budget.used == 0 and budget.waiting == 0


async def test_a_client_leaving_while_it_waits_for_bytes_leaves_nothing(tmp_path: Path) -> None:
    env = {**BUDGET, "PIXGATE_OVERLOAD_WAIT": "30"}
    async with gateway(tmp_path, env) as (gw, _held), aiohttp.ClientSession() as http:
        budget = gw.app[LIMITS].buffered
        stalled = await half_upload(gw, 200_000)
        await until(lambda: budget.used == 200_000, "the declared body reserved")
        waiting = await half_upload(gw, 150_000)
        await until(lambda: budget.waiting == 1, "the second upload waits for its bytes")
        waiting.close()
        await until(lambda: budget.waiting == 0, "the waiter gone with its client")
        assert budget.used == 200_000
        stalled.close()
        await until(lambda: budget.used == 0, "every reservation given back")
        assert gw.app[LIMITS].in_flight.count == 0
        async with http.get(f"{gw.url}/metrics") as resp:
            scrape = await resp.text()
        assert "pixgate_buffered_bytes 0.0" in scrape
        assert "pixgate_buffered_bytes_waiting 0.0" in scrape


def test_a_budget_smaller_than_one_body_is_refused_at_start(tmp_path: Path) -> None:
    from engine.settings import Settings

    with pytest.raises(ValueError, match="PIXGATE_MAX_BUFFERED_BYTES"):
        Settings.from_env({"PIXGATE_MAX_BUFFERED_BYTES": "1000"}, config_dir=tmp_path)


async def test_the_budget_is_first_come_first_served_and_settles_on_cancel() -> None:
    budget = ByteBudget(100, wait=30)
    await budget.take(80)
    big = asyncio.ensure_future(budget.take(50))
    await asyncio.sleep(0)
    small = asyncio.ensure_future(budget.take(10))  # fits, but must not overtake `big`
    await asyncio.sleep(0)
    assert budget.waiting == 2 and budget.used == 80
    big.cancel()  # the head leaves: `small` goes in
    await asyncio.wait_for(small, 5)
    assert budget.used == 90 and budget.waiting == 0
    budget.give(90)
    assert budget.used == 0
    quick = ByteBudget(100, wait=0.01)
    await quick.take(100)
    with pytest.raises(Overloaded) as refused:
        await quick.take(1)
    assert refused.value.reason == "buffered_bytes" and quick.waiting == 0


async def test_an_async_job_gives_its_large_body_slot_back(tmp_path: Path) -> None:
    """A job runs after its request has ended: it takes a large-body slot of its own and gives
    it back when it ends (it used to claim the finished request's, which nobody released:
    one slot lost for good per job with a big answer)."""
    env = {"PIXGATE_MAX_LARGE_BODIES": "1"}
    async with (
        gateway(tmp_path, env, pad=1_200_000) as (gw, held),
        aiohttp.ClientSession() as http,
    ):
        gate = gw.app[STATE].body_gate
        headers = {"Prefer": "respond-async"}
        async with http.post(f"{gw.v1}/images/generations", json=GENERATE, headers=headers) as r:
            assert r.status == 202
            location = r.headers["Location"]
        held.go.set()  # the big answer arrives after the 202
        async with http.get(f"{gw.url}{location}", params={"wait": "30s"}) as resp:
            job = await resp.json()
        assert job["status"] == "succeeded", job
        await until(lambda: gate.free == 1, "the job's slot given back")
        async with asyncio.timeout(30):  # a sync big answer still gets the slot
            async with http.post(f"{gw.v1}/images/generations", json=GENERATE) as resp:
                assert resp.status == 200
                assert len((await resp.json())["data"][0]["b64_json"]) > 1_500_000
        assert gate.free == 1


async def test_a_body_declared_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """A JSON body whose Content-Length is over PIXGATE_MAX_BODY_BYTES reserves no bytes, so
    it must not be read at all: aiohttp's read() would buffer up to the limit before its 413,
    outside the byte budget, once per such client."""
    async with gateway(tmp_path, BUDGET) as (gw, _held):
        host, port = gw.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                b"POST /v1/images/generations HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{"
            )
            await writer.drain()
            async with asyncio.timeout(10):  # unfixed, the gateway waits for the body
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
        finally:
            writer.close()
            await writer.wait_closed()
        assert head.startswith(b"HTTP/1.1 413"), head
        assert b"connection: close" in head.lower()
        assert b'"code":"request_too_large"' in body.replace(b" ", b"")
        assert gw.app[LIMITS].buffered.used == 0
