"""`stream: true` on /v1/images/generations and /edits: OpenAI's image stream events.

Driven by the official SDK (its stream parser is the contract) and, where the SSE framing itself
matters (event lines, keep-alive comments, the end of the stream), by a raw HTTP client. Every
event is validated against OpenAI's published schemas.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from PIL import Image

import engine.api.imagestream as imagestream
from engine.config.loader import build_snapshot
from tests.e2e.providers import config_dir, single
from tests.gateway import Gateway, run_gateway
from tests.openapi import validate_component
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream
from tests.upstreams.common import png_bytes

OPENAI_KEY = "sk-proj-" + "S" * 40
SCHEMAS = {
    "image_generation.partial_image": "ImageGenPartialImageEvent",
    "image_generation.completed": "ImageGenCompletedEvent",
    "image_edit.partial_image": "ImageEditPartialImageEvent",
    "image_edit.completed": "ImageEditCompletedEvent",
}
# Completed events carry usage always: zeros when the upstream reported none in OpenAI's shape.
NO_USAGE = {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
            "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}}  # fmt: skip


@dataclass
class RawStream:
    status: int
    content_type: str
    text: str
    events: list[tuple[str | None, Any]] = field(default_factory=list)  # (event, data)
    comments: int = 0


def parse_sse(text: str) -> tuple[list[tuple[str | None, Any]], int]:
    events: list[tuple[str | None, Any]] = []
    comments = 0
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in frame.split("\n"):
            if line.startswith(":"):
                comments += 1
            elif line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events, comments


async def post_raw(url: str, body: dict[str, Any]) -> RawStream:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        text = await resp.text()
        raw = RawStream(resp.status, resp.headers.get("Content-Type", ""), text)
    if raw.content_type.startswith("text/event-stream"):
        raw.events, raw.comments = parse_sse(text)
    return raw


def check_event(spec: dict[str, Any], name: str | None, data: dict[str, Any]) -> Image.Image:
    """The event line names the data's type, the data fits OpenAI's schema (strictly), the
    image decodes and matches the event's exact size and output_format."""
    assert name == data["type"], (name, data["type"])
    validate_component(spec, SCHEMAS[data["type"]], data)
    image = Image.open(io.BytesIO(base64.b64decode(data["b64_json"])))
    image.load()
    exact = f"{image.width}x{image.height}"
    assert data["pixgate_size"] == exact
    assert data["size"] == (exact if exact in ("1024x1024", "1024x1536", "1536x1024") else "auto")
    assert (image.format or "").lower() == data["output_format"]
    return image


@pytest.fixture
def fast_keepalive(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(imagestream, "KEEPALIVE_SECONDS", 0.05)
    return 0.05


@pytest.fixture
async def openai_gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Any]]:
    """A gateway whose route `m` is gpt-image-1 and `d3` dall-e-3, on the fake OpenAI API."""
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        routes = single("openai", "gpt-image-1")
        routes["routes"]["d3"] = {"targets": [{"provider": "openai", "model": "dall-e-3"}]}  # type: ignore[index]
        async with run_gateway(config_dir(tmp_path, ["openai"], routes), tmp_path / "f", env) as gw:
            yield gw, fake_openai.state(app)


def sdk(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30)


# ---------------------------------------------------------------------------------------------
# OpenAI upstream: previews, then the finished images


async def test_generate_stream_partials_then_completed(
    openai_gateway: tuple[Gateway, Any], openai_spec: dict[str, Any]
) -> None:
    gw, fake = openai_gateway
    async with sdk(gw) as client:
        stream = await client.images.generate(
            model="m", prompt="a fox in snow", size="1536x1024", stream=True, partial_images=2
        )
        events = [event async for event in stream]
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [getattr(e, "partial_image_index", None) for e in events[:2]] == [0, 1]
    sent = fake.last.json
    assert sent["stream"] is True and sent["partial_images"] == 2
    assert "response_format" not in sent

    raw = await post_raw(
        f"{gw.v1}/images/generations",
        {"model": "m", "prompt": "a fox in snow", "size": "1536x1024", "stream": True,
         "partial_images": 2, "quality": "low"},
    )  # fmt: skip
    assert raw.status == 200 and raw.content_type.startswith("text/event-stream")
    assert [name for name, _ in raw.events] == [e.type for e in events]
    for name, data in raw.events:
        image = check_event(openai_spec, name, data)
        assert image.size == (1536, 1024)
        assert data["quality"] == "low"
    completed = raw.events[-1][1]
    assert completed["usage"]["total_tokens"] > 0  # the upstream's usage is passed on
    assert "[DONE]" not in raw.text and raw.text.endswith("\n\n")  # ends like OpenAI's


async def test_stream_of_several_images(
    openai_gateway: tuple[Gateway, Any], openai_spec: dict[str, Any]
) -> None:
    gw, fake = openai_gateway
    raw = await post_raw(
        f"{gw.v1}/images/generations",
        {"model": "m", "prompt": "two foxes", "n": 2, "stream": True, "partial_images": 1},
    )
    names = [name for name, _ in raw.events]
    assert names.count("image_generation.partial_image") == 2
    assert names.count("image_generation.completed") == 2
    assert names[-1] == "image_generation.completed"
    for name, data in raw.events:
        check_event(openai_spec, name, data)
    assert len(fake.calls("generations")) == 1  # one upstream call for both images


async def test_partial_images_zero_and_not_streaming(openai_gateway: tuple[Gateway, Any]) -> None:
    gw, fake = openai_gateway
    raw = await post_raw(
        f"{gw.v1}/images/generations",
        {"model": "m", "prompt": "a fox", "stream": True, "partial_images": 0},
    )
    assert [name for name, _ in raw.events] == ["image_generation.completed"]
    assert fake.last.json["partial_images"] == 0
    # The same route without stream: the upstream is asked for JSON, the client gets JSON.
    async with sdk(gw) as client:
        result = await client.images.generate(model="m", prompt="a fox", response_format="b64_json")
    assert result.data and result.data[0].b64_json
    assert "stream" not in fake.last.json and "partial_images" not in fake.last.json


async def test_edit_stream_uses_image_edit_events(
    openai_gateway: tuple[Gateway, Any], openai_spec: dict[str, Any]
) -> None:
    gw, fake = openai_gateway
    source = png_bytes(1024, 1024)
    async with sdk(gw) as client:
        stream = await client.images.edit(
            model="m",
            image=("in.png", source, "image/png"),
            prompt="add a hat",
            stream=True,
            partial_images=1,
        )
        events = [event async for event in stream]
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    form = fake.last.form()
    assert form["stream"] == ["true"] and form["partial_images"] == ["1"]
    for event in events:
        data = event.to_dict()
        check_event(openai_spec, data["type"], data)


async def test_model_without_streaming_sends_completed_only(
    openai_gateway: tuple[Gateway, Any], openai_spec: dict[str, Any]
) -> None:
    """dall-e-3 cannot stream: it is asked for JSON, and the client still gets its stream."""
    gw, fake = openai_gateway
    raw = await post_raw(
        f"{gw.v1}/images/generations",
        {"model": "d3", "prompt": "a fox", "stream": True, "partial_images": 2},
    )
    assert [name for name, _ in raw.events] == ["image_generation.completed"]
    check_event(openai_spec, *raw.events[0])
    sent = fake.last.json
    assert "stream" not in sent and "partial_images" not in sent
    assert sent["response_format"] == "b64_json"  # stream events carry base64


# ---------------------------------------------------------------------------------------------
# Providers that do not stream (the demo)


async def test_demo_streams_completed_events_only(
    demo_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    async with sdk(demo_gateway) as client:
        stream = await client.images.generate(
            model="demo", prompt="a lighthouse", n=2, size="1024x1024", stream=True,
            partial_images=2, response_format="url",
        )  # fmt: skip
        events = [event async for event in stream]
    assert [e.type for e in events] == ["image_generation.completed"] * 2
    for event in events:
        data = event.to_dict()
        assert check_event(openai_spec, data["type"], data).size == (1024, 1024)


async def test_sizes_outside_openais_enum_are_auto_with_the_exact_size_beside(
    demo_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    """The spec allows three sizes (and auto) in stream events; other sizes are `auto` there,
    exact in `pixgate_size`, and every completed event has a usage object."""
    async with sdk(demo_gateway) as client:
        stream = await client.images.generate(
            model="demo", prompt="a small fox", size="256x256", stream=True
        )
        events = [event.to_dict() async for event in stream]
    assert [e["type"] for e in events] == ["image_generation.completed"]
    (data,) = events
    assert check_event(openai_spec, data["type"], data).size == (256, 256)
    assert (data["size"], data["pixgate_size"], data["usage"]) == ("auto", "256x256", NO_USAGE)


async def test_keepalive_comments_while_a_slow_upstream_works(
    demo_gateway: Gateway, fast_keepalive: float, openai_spec: dict[str, Any]
) -> None:
    raw = await post_raw(
        f"{demo_gateway.v1}/images/generations",
        {"model": "demo-async", "prompt": "slow", "size": "1024x1024", "stream": True,
         "delay": 0.6},
    )  # fmt: skip
    assert raw.status == 200
    assert raw.comments >= 3, raw.text[:300]
    assert raw.text.index(": keep-alive") < raw.text.index("event: image_generation.completed")
    assert [name for name, _ in raw.events] == ["image_generation.completed"]
    check_event(openai_spec, *raw.events[0])  # a URL result, downloaded and encoded


# ---------------------------------------------------------------------------------------------
# Failures


async def test_failure_before_any_event_is_an_ordinary_error(
    openai_gateway: tuple[Gateway, Any],
) -> None:
    gw, fake = openai_gateway
    fake.fail_next("server_error")
    async with sdk(gw) as client:
        with pytest.raises(openai.APIStatusError) as info:
            await client.images.generate(model="m", prompt="a fox", stream=True)
    assert info.value.status_code == 502
    assert info.value.response.headers["content-type"].startswith("application/json")
    fake.fail_next("content_policy")
    raw = await post_raw(
        f"{gw.v1}/images/generations", {"model": "m", "prompt": "x", "stream": True}
    )
    assert raw.status == 400 and raw.content_type.startswith("application/json")
    assert json.loads(raw.text)["error"]["code"] == "content_policy_violation"


async def test_failure_after_the_stream_started_is_an_error_event(
    demo_gateway: Gateway, fast_keepalive: float
) -> None:
    body = {"model": "demo-async", "prompt": "[demo:fail] nope", "stream": True}
    raw = await post_raw(f"{demo_gateway.v1}/images/generations", {**body, "delay": 0.4})
    assert raw.status == 200 and raw.comments >= 1
    assert len(raw.events) == 1
    name, data = raw.events[0]
    assert name == "error"
    assert data["error"]["code"] == "upstream_error"
    assert "demo task failed" in data["error"]["message"]
    async with sdk(demo_gateway) as client:
        stream = await client.images.generate(
            model="demo-async", prompt="[demo:fail] nope", stream=True, extra_body={"delay": 0.4}
        )
        with pytest.raises(openai.APIError, match="demo task failed"):
            async for _ in stream:
                pass


async def test_bad_stream_parameters_are_400(demo_gateway: Gateway) -> None:
    url = f"{demo_gateway.v1}/images/generations"
    raw = await post_raw(url, {"model": "demo", "prompt": "x", "stream": True, "partial_images": 4})
    assert raw.status == 400 and json.loads(raw.text)["error"]["param"] == "partial_images"
    raw = await post_raw(url, {"model": "demo", "prompt": "x", "stream": "yes"})
    assert raw.status == 400 and json.loads(raw.text)["error"]["param"] == "stream"
    raw = await post_raw(url, {"model": "nope", "prompt": "x", "stream": True})
    assert raw.status == 404 and raw.content_type.startswith("application/json")


# A hand-written OpenAI-style upstream for what the protocol fake does not do: a preview, then
# an error in the middle of the stream.


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _preview_then_error(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    preview = base64.b64encode(png_bytes(1024, 1024)).decode()
    partial = {"type": "image_generation.partial_image", "b64_json": preview}
    await resp.write(_frame(partial["type"], {**partial, "partial_image_index": 0}))
    await resp.write(
        _frame("error", {"error": {"message": "the render node fell over", "type": "server_error"}})
    )
    await resp.write_eof()
    return resp


async def test_upstream_error_after_a_preview_is_an_error_event(
    tmp_path: Path, openai_spec: dict[str, Any]
) -> None:
    app = web.Application()
    app.router.add_post("/v1/images/generations", _preview_then_error)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        cfg = config_dir(tmp_path, ["openai"], single("openai", "gpt-image-1"))
        async with run_gateway(cfg, tmp_path / "f", env) as gw:
            raw = await post_raw(
                f"{gw.v1}/images/generations",
                {"model": "m", "prompt": "x", "stream": True, "partial_images": 1},
            )
            assert [name for name, _ in raw.events] == ["image_generation.partial_image", "error"]
            check_event(openai_spec, *raw.events[0])
            error = raw.events[1][1]["error"]
            assert error["type"] == "upstream_error"
            assert "the render node fell over" in error["message"]
            async with sdk(gw) as client:
                stream = await client.images.generate(
                    model="m", prompt="x", stream=True, partial_images=1
                )
                seen = []
                with pytest.raises(openai.APIError, match="render node fell over"):
                    async for event in stream:
                        seen.append(event.type)
                assert seen == ["image_generation.partial_image"]


# A hand-written Seedream (Ark) upstream: each image is its own `partial_succeeded` event.

ARK_KEY = "0123abcd-0000-4000-8000-000000000009"
BODIES = web.AppKey("bodies", list[dict[str, Any]])


async def _seedream(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[BODIES].append(body)
    width, height = (int(v) for v in body["size"].split("x"))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    image = base64.b64encode(png_bytes(width, height)).decode()
    done = {"type": "image_generation.partial_succeeded", "image_index": 0, "b64_json": image}
    await resp.write(_frame(done["type"], done))
    usage = {"generated_images": 1, "output_tokens": 4096, "total_tokens": 4096}
    await resp.write(_frame("image_generation.completed", {"usage": usage}))
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def test_seedream_streams_each_image_as_it_is_done(
    tmp_path: Path, openai_spec: dict[str, Any]
) -> None:
    app = web.Application()
    app[BODIES] = []
    app.router.add_post("/api/v3/images/generations", _seedream)
    async with serve_upstream(app) as base:
        env = {"DOUBAO_BASE_URL": f"{base}/api/v3", "DOUBAO_API_KEYS": ARK_KEY}
        cfg = config_dir(tmp_path, ["doubao"], single("doubao", "doubao-seedream-4-0-250828"))
        async with run_gateway(cfg, tmp_path / "f", env) as gw:
            raw = await post_raw(
                f"{gw.v1}/images/generations",
                {"model": "m", "prompt": "tea", "n": 2, "size": "1024x1024", "stream": True,
                 "partial_images": 2},
            )  # fmt: skip
    assert [name for name, _ in raw.events] == ["image_generation.completed"] * 2
    for name, data in raw.events:
        assert check_event(openai_spec, name, data).size == (1024, 1024)
        assert data["usage"] == NO_USAGE  # Ark's usage is not OpenAI's shape
    assert len(app[BODIES]) == 2  # one call per image, side by side
    assert all(b["stream"] is True and b["response_format"] == "b64_json" for b in app[BODIES])


def test_stream_fields_are_checked_at_load(tmp_path: Path) -> None:
    root = config_dir(tmp_path, ["openai"], single("openai", "gpt-image-1"))
    source = root / "providers.d" / "openai.yaml"
    text = source.read_text(encoding="utf-8")
    broken = text.replace("partial_index: partial_image_index\n", "partial_index: a[\n", 1)
    assert broken != text
    source.write_text(broken, encoding="utf-8")
    lines = [d.format() for d in build_snapshot(root, {}).diagnostics.sorted()]
    assert any("E211 tasks.generate.steps[0].stream.partial_index: JMESPath" in x for x in lines)
    source.write_text(
        text.replace("          image_event: image_generation.completed\n", "", 1),
        encoding="utf-8",
    )
    lines = [d.format() for d in build_snapshot(root, {}).diagnostics.sorted()]
    assert any("E101 tasks.generate.steps[0].stream: " in x for x in lines), lines


async def test_a_client_leaving_mid_stream_stops_the_upstream_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_keepalive: float
) -> None:
    import asyncio

    import engine.demo.upstream as demo_upstream
    from engine.api.keys import STATE
    from tests.gateway import REPO

    polls: list[str] = []
    polling = asyncio.Event()
    original = demo_upstream.get_task

    async def counting(request: web.Request) -> web.Response:
        polls.append(request.match_info["task_id"])
        if len(polls) > 2:
            polling.set()
        return await original(request)

    monkeypatch.setattr(demo_upstream, "get_task", counting)
    async with run_gateway(REPO, tmp_path / "files") as gw, aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{gw.v1}/images/generations",
            json={"model": "demo-async", "prompt": "slow", "stream": True, "delay": 10},
        )
        assert (await resp.content.readline()).startswith(b": keep-alive")
        async with asyncio.timeout(5):
            await polling.wait()
        resp.close()  # the client goes away while the upstream still works
        await asyncio.sleep(10 * fast_keepalive)  # the next keep-alive finds it gone
        count = len(polls)
        await asyncio.sleep(0.3)
        assert len(polls) == count, "the gateway kept polling after the client left"
        leftovers = [
            t
            for t in asyncio.all_tasks()
            if not t.done()
            and "engine/runtime"
            in getattr(getattr(t.get_coro(), "cr_code", None), "co_filename", "")
        ]
        assert leftovers == []
        connector = gw.app[STATE].service.session.connector
        assert connector is not None and not connector._acquired
