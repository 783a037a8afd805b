"""A request waiting for a large-body slot buffers almost nothing of its upstream answer
(issue 12, item 5). Before, aiohttp read each waiting answer into memory up to its buffer's
high-water mark plus one socket read (about 0.7 MiB per waiting request with a Content-Length,
3 MiB without one), so memory grew with the number of clients however few slots were
configured. Measured with tracemalloc in this process (the gateway runs here; the upstream is
its own process, so its send buffers are not counted): the growth per waiting request."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from engine.api.keys import STATE
from tests.e2e.providers import config_dir, single
from tests.gateway import REPO, free_port, run_gateway

WAITING = 12
SIZE = 1_100_000  # image bytes: a 1.5 MB b64_json answer
# What a waiting request may hold: one socket read (the event loop reads up to 256 KiB at
# once) and its own objects; without a Content-Length also the first bodygate.UNSIZED_LARGE
# bytes read before it knew the body was large. Before the fix: ~700 and ~1,500 KiB.
BOUND = {"sized": 320 * 1024, "chunked": 512 * 1024}


@pytest.fixture(params=["sized", "chunked"])
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """bench/waiting_memory.py's upstream, in its own process: answers with a Content-Length
    or chunked."""
    port = free_port()
    chunked = ["--chunked"] if request.param == "chunked" else []
    cmd = [sys.executable, "-m", "bench.waiting_memory", "--upstream", str(port)]
    proc = subprocess.Popen([*cmd, "--size", str(SIZE), *chunked], cwd=REPO)
    try:
        yield f"http://127.0.0.1:{port}", request.param
    finally:
        proc.terminate()
        proc.wait(10)


async def _up(url: str) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 404:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)


async def test_waiting_requests_do_not_buffer_their_answers(
    upstream: tuple[str, str], tmp_path: Path
) -> None:
    base, kind = upstream
    await _up(base)
    env = {
        "OPENAI_BASE_URL": f"{base}/v1",
        "OPENAI_API_KEYS": "sk-proj-" + "Q" * 40,
        "PIXGATE_MAX_LARGE_BODIES": "1",
    }
    routes = single("openai", "gpt-image-1")
    body = {"model": "m", "prompt": "x", "response_format": "b64_json"}
    async with (
        run_gateway(config_dir(tmp_path, ["openai"], routes), tmp_path / "f", env) as gw,
        aiohttp.ClientSession() as http,
    ):
        gate = gw.app[STATE].body_gate
        async with http.post(f"{gw.v1}/images/generations", json=body) as resp:
            assert resp.status == 200  # warm: imports, pools, the first connection
        blocker = gate.ticket()
        await blocker.acquire()  # the one slot is taken: every request below waits for it

        async def ask() -> int:
            async with http.post(f"{gw.v1}/images/generations", json=body) as resp:
                data = await resp.json()
                assert len(data["data"][0]["b64_json"]) > SIZE
                return resp.status

        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tasks = [asyncio.ensure_future(ask()) for _ in range(WAITING)]
            for _ in range(1500):  # up to 30 s
                if gate.waiting == WAITING:
                    break
                await asyncio.sleep(0.02)
            assert gate.waiting == WAITING
            # The answers are all sent; give the loop time to read whatever it will read
            # (more time only makes the test stricter).
            await asyncio.sleep(0.5)
            grown = (tracemalloc.get_traced_memory()[0] - before) / WAITING
        finally:
            tracemalloc.stop()
        blocker.release()
        async with asyncio.timeout(60):
            assert await asyncio.gather(*tasks) == [200] * WAITING
        assert gate.free == 1
        assert grown < BOUND[kind], f"{grown / 1024:.0f} KiB per waiting request"


@pytest.fixture
def stream_upstream() -> Iterator[str]:
    """The same upstream: a streaming request gets a 2 MB `partial_image` line, then a
    `completed` one, each a single `data:` line."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.waiting_memory", "--upstream", str(port)]
    proc = subprocess.Popen([*cmd, "--size", str(SIZE)], cwd=REPO)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_waiting_streams_do_not_buffer_their_events(
    stream_upstream: str, tmp_path: Path
) -> None:
    """An image event stream's large event takes the large-body slot before it is read, and
    gives it back once written: streaming clients beyond the slots hold the start of one line
    each, not their events (before: about 1.5 MiB per client, growing with the clients)."""
    await _up(stream_upstream)
    env = {
        "OPENAI_BASE_URL": f"{stream_upstream}/v1",
        "OPENAI_API_KEYS": "sk-proj-" + "Q" * 40,
        "PIXGATE_MAX_LARGE_BODIES": "1",
    }
    routes = single("openai", "gpt-image-1")
    body = {"model": "m", "prompt": "x", "stream": True, "partial_images": 1}
    async with (
        run_gateway(config_dir(tmp_path, ["openai"], routes), tmp_path / "f", env) as gw,
        aiohttp.ClientSession() as http,
    ):
        gate = gw.app[STATE].body_gate

        async def ask() -> list[bytes]:
            async with http.post(f"{gw.v1}/images/generations", json=body) as resp:
                assert resp.status == 200
                return [x for x in (await resp.read()).split(b"\n") if x.startswith(b"data:")]

        assert len(await ask()) == 2  # warm; and a lone stream gets the slot back each time
        assert gate.free == 1
        blocker = gate.ticket()
        await blocker.acquire()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tasks = [asyncio.ensure_future(ask()) for _ in range(WAITING)]
            for _ in range(1500):  # up to 30 s
                if gate.waiting == WAITING:
                    break
                await asyncio.sleep(0.02)
            assert gate.waiting == WAITING, f"{gate.waiting} streams wait for the slot"
            await asyncio.sleep(0.5)  # whatever the loop will still read (stricter with time)
            grown = (tracemalloc.get_traced_memory()[0] - before) / WAITING
        finally:
            tracemalloc.stop()
        blocker.release()
        async with asyncio.timeout(60):
            for events in await asyncio.gather(*tasks):
                assert len(events) == 2 and all(len(e) > SIZE for e in events)
        assert gate.free == 1  # every event gave its slot back
        assert grown < BOUND["chunked"], f"{grown / 1024:.0f} KiB per waiting stream"
