"""An upstream that trickles its answer (a byte now and then, never quiet for long) is held
to the step's `timeout`: on a step with a `stream:` spec a JSON answer is not an event
stream, so it must finish within the exchange's timeout like any other answer, and the
request goes on to the next target. An event stream may run longer than the timeout, as long
as it is never quiet for that long."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
import yaml
from aiohttp import web

from tests.e2e.dsl_provider import provider_doc
from tests.gateway import run_gateway
from tests.upstreams import serve_upstream

SEEN = web.AppKey("seen", list[str])
PNG_URL = "https://img.test/fast.png"
SSE_URL = b"https://img.test/streamed.png"


async def _generate(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[SEEN].append(body["model"])
    if body["model"] == "fast":
        return web.json_response({"data": [{"url": PNG_URL}]})
    if body["model"] == "sse":  # 1.5 s of events, one every 0.3 s
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(5):
            await resp.write(b"event: progress\ndata: {}\n\n")
            await asyncio.sleep(0.3)
        await resp.write(b'event: image.completed\ndata: {"data": [{"url": "%s"}]}\n\n' % SSE_URL)
        return resp
    if body["model"] == "quiet":  # an event, then quiet for 3 s (past the 1 s timeout)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"event: progress\ndata: {}\n\n")
        await asyncio.sleep(3)
        await resp.write(b'event: image.completed\ndata: {"data": [{"url": "%s"}]}\n\n' % SSE_URL)
        return resp
    # JSON, but one byte every 0.3 s: never quiet for the 1 s timeout, never done
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for _ in range(100):
        await resp.write(b" ")
        await asyncio.sleep(0.3)
    await resp.write(b'{"data": []}')
    return resp


STEPS = [
    {"name": "generate",
     "request": {"path": "/generate", "timeout": "1s",
                 "json": {"model": "{{ model }}", "prompt": "{{ prompt }}"}},
     "response": "auto",
     "stream": {"image_event": "image.completed"},
     "images": "data[].url"},
]  # fmt: skip


@contextlib.asynccontextmanager
async def _sdk(tmp_path: Path, app: web.Application) -> AsyncIterator[openai.AsyncOpenAI]:
    doc = provider_doc(STEPS)
    doc["models"] = {name: {"tasks": ["generate"]} for name in ("slow", "fast", "sse", "quiet")}
    root = tmp_path / "config"
    (root / "providers.d").mkdir(parents=True)
    (root / "providers.d" / "t.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    targets = [
        {"provider": "t", "model": "slow", "priority": 2},
        {"provider": "t", "model": "fast", "priority": 1},
    ]
    routes = {
        "demo": False,
        "routes": {
            "m": {"timeout": "5s", "targets": targets},
            "s": {"timeout": "5s", "targets": [{"provider": "t", "model": "sse"}]},
            "q": {
                "timeout": "5s",
                "targets": [
                    {"provider": "t", "model": "quiet", "priority": 2},
                    {"provider": "t", "model": "fast", "priority": 1},
                ],
            },
        },
    }
    (root / "routes.yaml").write_text(yaml.safe_dump(routes))
    app[SEEN] = []
    app.router.add_post("/generate", _generate)
    async with (
        serve_upstream(app) as base,
        run_gateway(root, tmp_path / "files", {"T_BASE_URL": base}) as gw,
        openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30) as sdk,
    ):
        yield sdk


@pytest.mark.parametrize(
    ("model", "url", "seen"),
    [
        # a trickled JSON answer times out, and the next target answers
        ("m", PNG_URL, ["slow", "fast"]),
        # an event stream may run longer than the timeout
        ("s", SSE_URL.decode(), ["sse"]),
        # an event stream quiet for longer than the timeout times out: the next target's
        ("q", PNG_URL, ["quiet", "fast"]),
    ],
    ids=["trickled-json-fails-over", "long-event-stream-runs-on", "quiet-event-stream-fails-over"],
)
async def test_a_step_timeout_bounds_a_slow_answer_but_not_a_live_stream(
    tmp_path: Path, model: str, url: str, seen: list[str]
) -> None:
    app = web.Application()
    async with _sdk(tmp_path, app) as sdk:
        result = await sdk.images.generate(model=model, prompt="a fox", response_format="url")
    assert result.data is not None and result.data[0].url == url
    assert app[SEEN] == seen
