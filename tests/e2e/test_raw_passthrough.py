"""Big base64 answers pass through without being parsed into strings and encoded again
(engine/rawtext.py). The threshold is lowered so the fake upstream's PNGs take that
path; every way a base64 result leaves the gateway must still carry the upstream's bytes."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from engine import rawtext
from tests.e2e.providers import config_dir, single
from tests.gateway import run_gateway
from tests.openapi import validate_component
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream

OPENAI_KEY = "sk-proj-" + "R" * 40
DATA_URI = re.compile(r"!\[image\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Lower the threshold to 1 KB and record what each JSON response body was made of."""
    monkeypatch.setattr(rawtext, "MIN_LENGTH", 1024)
    bodies: list[object] = []
    real = rawtext.dumps

    def recording(obj: Any) -> object:
        out = real(obj)
        bodies.append(out)
        return out

    monkeypatch.setattr(rawtext, "dumps", recording)
    return bodies


@pytest.fixture
async def upstream_and_sdk(tmp_path: Path) -> AsyncIterator[tuple[str, openai.AsyncOpenAI, str]]:
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        routes = single("openai", "gpt-image-1", chat_image_format="data_uri")
        config = config_dir(tmp_path, ["openai"], routes)
        async with run_gateway(config, tmp_path / "files", env) as gw:
            client = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30)
            async with client:
                yield base, client, gw.url


async def direct_b64(base: str, prompt: str) -> str:
    """What the upstream itself answers for the request the gateway sends."""
    body = {"model": "gpt-image-1", "prompt": prompt, "size": "1024x1024"}
    headers = {"Authorization": f"Bearer {OPENAI_KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/v1/images/generations", json=body, headers=headers) as resp,
    ):
        assert resp.status == 200
        return str((await resp.json())["data"][0]["b64_json"])


async def test_b64_json_is_the_upstreams_own_text(
    spliced: list[object], upstream_and_sdk: tuple[str, openai.AsyncOpenAI, str],
    openai_spec: dict[str, Any],
) -> None:  # fmt: skip
    base, sdk, _ = upstream_and_sdk
    raw = await sdk.images.with_raw_response.generate(
        model="m", prompt="a fox", size="1024x1024", response_format="b64_json"
    )
    body = raw.http_response.json()
    validate_component(openai_spec, "ImagesResponse", body)
    assert body["data"][0]["b64_json"] == await direct_b64(base, "a fox")
    assert int(raw.headers["content-length"]) == len(raw.http_response.content)
    assert isinstance(spliced[-1], rawtext.RawBody)  # it did take the in-place path


async def test_url_results_store_the_decoded_image(
    spliced: list[object], upstream_and_sdk: tuple[str, openai.AsyncOpenAI, str]
) -> None:
    base, sdk, _ = upstream_and_sdk
    result = await sdk.images.generate(model="m", prompt="a hare", response_format="url")
    async with aiohttp.ClientSession() as http, http.get(result.data[0].url or "") as resp:
        stored = await resp.read()
    assert stored == base64.b64decode(await direct_b64(base, "a hare"))


async def test_chat_data_uri_carries_the_whole_image(
    spliced: list[object], upstream_and_sdk: tuple[str, openai.AsyncOpenAI, str]
) -> None:
    base, sdk, _ = upstream_and_sdk
    completion = await sdk.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "an owl"}]
    )
    found = DATA_URI.findall(completion.choices[0].message.content or "")
    assert found == [await direct_b64(base, "an owl")]


async def test_image_stream_events_carry_the_whole_image(
    spliced: list[object], upstream_and_sdk: tuple[str, openai.AsyncOpenAI, str]
) -> None:
    base, sdk, _ = upstream_and_sdk
    stream = await sdk.images.generate(model="m", prompt="a lynx", stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "image_generation.completed"
    assert events[-1].b64_json == await direct_b64(base, "a lynx")


async def test_a_client_that_leaves_mid_answer_does_not_keep_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The client reads the start of a big answer and hangs up while the gateway waits to
    write the rest: the gateway lets the answer go quietly (no error, no second response
    attempt) and no garbage left for the collector holds a view of it. (How much memory this
    saves under load is measured in bench/: b64 at c=64, where wrk hangs up mid-answer.)"""
    big = base64.b64encode(bytes(range(256)) * 24 * 1024).decode()  # 6 MiB of image bytes

    async def images(_: web.Request) -> web.Response:
        return web.json_response({"created": 1, "data": [{"b64_json": big}]})

    upstream = web.Application()
    upstream.router.add_post("/v1/images/generations", images)
    caplog.set_level(logging.INFO)
    async with serve_upstream(upstream) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        config = config_dir(tmp_path, ["openai"], single("openai", "gpt-image-1"))
        async with run_gateway(config, tmp_path / "files", env) as gw:
            payload = b'{"model": "m", "prompt": "x", "response_format": "b64_json"}'
            host, port = gw.url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            head = await asyncio.wait_for(reader.read(1024), 10)
            assert head.startswith(b"HTTP/1.1 200")
            gc.disable()  # what a collection would free later is what this test looks for
            try:
                writer.transport.abort()  # gone, with megabytes still to send
                await asyncio.sleep(0.5)
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                kept = [o for o in gc.garbage if isinstance(o, memoryview) and o.nbytes > 1 << 20]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
            assert kept == []
            async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/health") as resp:
                assert resp.status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
