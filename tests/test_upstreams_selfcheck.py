"""Self-check of the fake upstream servers in ``tests/upstreams`` over real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from yarl import URL

from tests.upstreams import huggingface_space as fake_gradio
from tests.upstreams import modelscope as fake_modelscope
from tests.upstreams import openai as fake_openai
from tests.upstreams import pollinations as fake_pollinations
from tests.upstreams import serve_upstream, start
from tests.upstreams import siliconflow as fake_siliconflow
from tests.upstreams.common import FakeUpstream, jpeg_bytes, png_bytes

KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MS_SUBMIT = {**AUTH, "X-ModelScope-Async-Mode": "true"}
MS_POLL = {**AUTH, "X-ModelScope-Task-Type": "image_generation"}


def decode(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return str(img.format), img.size


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with serve_upstream(app) as base, aiohttp.ClientSession() as session:
        yield base, session


def parse_sse(text: str) -> list[tuple[str, Any]]:
    frames = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        frames.append((fields["event"], json.loads(fields["data"])))
    return frames


# --------------------------------------------------------------------------------------------
# Scripted failures, table-driven across all providers
# --------------------------------------------------------------------------------------------

Call = Callable[[aiohttp.ClientSession, str], Awaitable[aiohttp.ClientResponse]]


async def _call_openai(s: aiohttp.ClientSession, base: str) -> aiohttp.ClientResponse:
    body = {"model": "gpt-image-1", "prompt": "a fox", "size": "1024x1024", "quality": "low"}
    return await s.post(f"{base}/v1/images/generations", json=body, headers=AUTH)


async def _call_siliconflow(s: aiohttp.ClientSession, base: str) -> aiohttp.ClientResponse:
    body = {"model": "Kwai-Kolors/Kolors", "prompt": "a fox", "image_size": "64x64"}
    return await s.post(f"{base}/v1/images/generations", json=body, headers=AUTH)


async def _call_pollinations(s: aiohttp.ClientSession, base: str) -> aiohttp.ClientResponse:
    return await s.get(f"{base}/image/a%20fox?width=64&height=64", headers=AUTH)


async def _call_modelscope(s: aiohttp.ClientSession, base: str) -> aiohttp.ClientResponse:
    body = {"model": "Tongyi-MAI/Z-Image-Turbo", "prompt": "a fox", "size": "64x64"}
    return await s.post(f"{base}/v1/images/generations", json=body, headers=MS_SUBMIT)


async def _call_gradio(s: aiohttp.ClientSession, base: str) -> aiohttp.ClientResponse:
    body = {"data": ["a fox", 1, False, 64, 64, 4]}
    return await s.post(f"{base}/gradio_api/call/infer", json=body, headers=AUTH)


PROVIDERS: dict[str, tuple[Callable[..., web.Application], Call]] = {
    "openai": (fake_openai.create_app, _call_openai),
    "siliconflow": (fake_siliconflow.create_app, _call_siliconflow),
    "pollinations": (fake_pollinations.create_app, _call_pollinations),
    "modelscope": (fake_modelscope.create_app, _call_modelscope),
    "huggingface_space": (fake_gradio.create_app, _call_gradio),
}

EXPECTED_STATUS = {"rate_limit": 429, "bad_key": 401, "server_error": 500, "content_policy": 400}


def _error_message(provider: str, status: int, body: bytes) -> str:
    """Extract the message from the provider's documented error shape (asserting the shape)."""
    if provider == "huggingface_space" and status == 500:
        return body.decode()
    doc = json.loads(body)
    if provider == "openai":
        err = doc["error"]
        assert set(err) == {"message", "type", "param", "code"}
        return str(err["message"])
    if provider == "siliconflow":
        assert doc["data"] is None
        assert status == 429 or isinstance(doc["code"], int)
        return str(doc["message"])
    if provider == "pollinations":
        assert doc["success"] is False and doc["status"] == status
        return str(doc["error"]["message"])
    if provider == "modelscope":
        assert doc["errors"]["code"] == status and doc["request_id"]
        return str(doc["errors"]["message"])
    return str(doc["error"])


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("kind", sorted(EXPECTED_STATUS))
async def test_scripted_error_kinds(provider: str, kind: str) -> None:
    create_app, call = PROVIDERS[provider]
    app = create_app()
    st: FakeUpstream = next(v for v in app.values() if isinstance(v, FakeUpstream))
    on = "submit" if provider == "huggingface_space" and kind == "content_policy" else None
    st.fail_next(kind, on=on)
    async with running(app) as (base, s):
        resp = await call(s, base)
        body = await resp.read()
        assert resp.status == EXPECTED_STATUS[kind], body
        assert _error_message(provider, resp.status, body)
        if kind == "rate_limit":
            assert resp.headers["Retry-After"] == "7"
        assert st.pending_failures == []
        again = await call(s, base)  # the failure was consumed: next call succeeds
        assert again.status == 200, await again.text()
    assert len(st.requests) == 2 and st.requests[0].endpoint is not None


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_malformed_and_timeout(provider: str) -> None:
    create_app, call = PROVIDERS[provider]
    app = create_app(hang_seconds=0.15)
    st: FakeUpstream = next(v for v in app.values() if isinstance(v, FakeUpstream))
    st.fail_next("malformed")
    st.fail_next("timeout", times=2)
    async with running(app) as (base, s):
        resp = await call(s, base)
        assert resp.status == 200
        body = await resp.read()
        if provider == "pollinations":
            assert resp.content_type == "image/jpeg"
            with pytest.raises(OSError):
                decode(body)
        else:
            with pytest.raises(ValueError):
                json.loads(body)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call(s, base), 0.05)
        started = time.monotonic()
        late = await call(s, base)  # a stalled request still answers normally afterwards
        assert late.status == 200
        assert time.monotonic() - started >= 0.12


async def test_timeout_handler_does_not_block_shutdown() -> None:
    app = fake_openai.create_app(hang_seconds=30)
    fake_openai.state(app).fail_next("timeout")
    base, runner = await start(app)
    async with aiohttp.ClientSession() as s:
        task = asyncio.create_task(_call_openai(s, base))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await runner.cleanup()
        assert time.monotonic() - started < 1.5
        (outcome,) = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 1)
        # Either the stalled request was answered 503 or its connection was dropped.
        assert isinstance(outcome, aiohttp.ClientError) or outcome.status == 503


async def test_fail_next_validation_and_targeting() -> None:
    st = fake_modelscope.state(fake_modelscope.create_app())
    with pytest.raises(ValueError):
        st.fail_next("nope")
    with pytest.raises(ValueError):
        st.fail_next("rate_limit", on="no_such_endpoint")
    with pytest.raises(ValueError):
        fake_openai.state(fake_openai.create_app()).fail_next("poll_failed")


# --------------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------------


async def test_openai_gpt_image_generation() -> None:
    app = fake_openai.create_app(expected_key=KEY)
    async with running(app) as (base, s):
        body = {"model": "gpt-image-1", "prompt": "a fox", "size": "1536x1024", "n": 2}
        resp = await s.post(f"{base}/v1/images/generations", json=body, headers=AUTH)
        assert resp.status == 200
        assert resp.headers["x-request-id"].startswith("req_")
        doc = await resp.json()
        assert len(doc["data"]) == 2 and all(set(d) == {"b64_json"} for d in doc["data"])
        assert decode(base64.b64decode(doc["data"][0]["b64_json"])) == ("PNG", (1536, 1024))
        assert doc["size"] == "1536x1024" and doc["output_format"] == "png"
        assert doc["usage"]["total_tokens"] > 0 and "input_tokens_details" in doc["usage"]
        body = {"model": "gpt-image-1", "prompt": "a fox", "output_format": "webp"}
        doc = await (await s.post(f"{base}/v1/images/generations", json=body, headers=AUTH)).json()
        assert decode(base64.b64decode(doc["data"][0]["b64_json"])) == ("WEBP", (1024, 1024))
        # GPT image models reject response_format, and unknown fields, like the real API.
        for extra in ({"response_format": "b64_json"}, {"image_size": "1024x1024"}):
            body = {"model": "gpt-image-1", "prompt": "x", **extra}
            resp = await s.post(f"{base}/v1/images/generations", json=body, headers=AUTH)
            assert resp.status == 400
            err = (await resp.json())["error"]
            assert err["code"] == "unknown_parameter" and err["param"] == next(iter(extra))
        resp = await s.post(f"{base}/v1/images/generations", json={"model": "gpt-image-1"})
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] is None  # "You didn't provide an API key"
        resp = await s.post(
            f"{base}/v1/images/generations",
            json={"model": "gpt-image-1", "prompt": "x"},
            headers={"Authorization": "Bearer sk-wrong"},
        )
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_api_key"
    st = fake_openai.state(app)
    assert st.calls("generations")[0].json["n"] == 2
    assert st.calls("generations")[0].headers["authorization"] == f"Bearer {KEY}"


async def test_openai_dall_e_3_and_stream() -> None:
    app = fake_openai.create_app()
    async with running(app) as (base, s):
        body = {"model": "dall-e-3", "prompt": "a fox", "n": 2}
        resp = await s.post(f"{base}/v1/images/generations", json=body)
        assert resp.status == 400 and (await resp.json())["error"]["param"] == "n"
        body = {"model": "dall-e-3", "prompt": "a fox", "size": "1792x1024", "style": "natural"}
        doc = await (await s.post(f"{base}/v1/images/generations", json=body)).json()
        item = doc["data"][0]
        assert item["revised_prompt"] == fake_openai.revise_prompt("a fox")
        assert item["url"].startswith(f"{base}/files/") and "usage" not in doc
        image = await (await s.get(item["url"])).read()
        assert decode(image) == ("PNG", (1792, 1024))
        body["response_format"] = "b64_json"
        doc = await (await s.post(f"{base}/v1/images/generations", json=body)).json()
        assert decode(base64.b64decode(doc["data"][0]["b64_json"]))[1] == (1792, 1024)
        body = {"model": "gpt-image-1", "prompt": "x", "stream": True, "partial_images": 2}
        resp = await s.post(f"{base}/v1/images/generations", json=body)
        assert resp.content_type == "text/event-stream"
        frames = parse_sse(await resp.text())
        assert [f[0] for f in frames] == ["image_generation.partial_image"] * 2 + [
            "image_generation.completed"
        ]
        assert all(name == data["type"] for name, data in frames)
        assert "usage" in frames[-1][1]


async def test_openai_edits_multipart() -> None:
    app = fake_openai.create_app()
    async with running(app) as (base, s):
        form = aiohttp.FormData()
        form.add_field("model", "gpt-image-1")
        form.add_field("prompt", "make a gift basket")
        form.add_field("size", "1024x1536")
        form.add_field("n", "1")
        form.add_field("image[]", png_bytes(64, 64), filename="a.png", content_type="image/png")
        form.add_field("image[]", jpeg_bytes(32, 48), filename="b.jpg", content_type="image/jpeg")
        mask = png_bytes(64, 64, transparent=True)
        form.add_field("mask", mask, filename="mask.png", content_type="image/png")
        resp = await s.post(f"{base}/v1/images/edits", data=form)
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
        assert decode(base64.b64decode(doc["data"][0]["b64_json"])) == ("PNG", (1024, 1536))
        rec = fake_openai.state(app).last
        assert rec.endpoint == "edits" and rec.field("model") == "gpt-image-1"
        assert [(p.name, p.filename, p.content_type) for p in rec.files()] == [
            ("image[]", "a.png", "image/png"),
            ("image[]", "b.jpg", "image/jpeg"),
            ("mask", "mask.png", "image/png"),
        ]
        assert rec.files("mask")[0].size == len(mask) and rec.body_size > len(mask)
        # A mask whose size does not match the first image is rejected.
        form = aiohttp.FormData()
        form.add_field("prompt", "x")
        form.add_field("image", png_bytes(64, 64), filename="a.png", content_type="image/png")
        bad = png_bytes(32, 32, transparent=True)
        form.add_field("mask", bad, filename="m.png", content_type="image/png")
        resp = await s.post(f"{base}/v1/images/edits", data=form)
        assert resp.status == 400 and (await resp.json())["error"]["param"] == "mask"


# --------------------------------------------------------------------------------------------
# SiliconFlow
# --------------------------------------------------------------------------------------------


async def test_siliconflow_generation_and_validation() -> None:
    app = fake_siliconflow.create_app(expected_key=KEY)
    async with running(app) as (base, s):
        body = {
            "model": "Kwai-Kolors/Kolors",
            "prompt": "a lighthouse",
            "negative_prompt": "blurry",
            "image_size": "960x1280",
            "batch_size": 3,
            "seed": 42,
        }
        resp = await s.post(f"{base}/v1/images/generations", json=body, headers=AUTH)
        assert resp.status == 200 and resp.headers["x-siliconcloud-trace-id"]
        doc = await resp.json()
        assert doc["seed"] == 42 and "inference" in doc["timings"] and len(doc["images"]) == 3
        image = await (await s.get(doc["images"][0]["url"])).read()
        assert decode(image) == ("PNG", (960, 1280))
        for bad, code in (
            ({"batch_size": 5}, 20015),
            ({"image_size": "big"}, 20015),
            ({"model": "nope/nope"}, 20012),
        ):
            resp = await s.post(f"{base}/v1/images/generations", json={**body, **bad}, headers=AUTH)
            assert resp.status == 400
            assert await resp.json() == {
                "code": code,
                "message": fake_siliconflow.MODEL_NOT_FOUND
                if code == 20012
                else fake_siliconflow.INVALID_PARAMETER,
                "data": None,
            }
        resp = await s.post(f"{base}/v1/images/generations", json=body)
        assert resp.status == 401
    assert len(fake_siliconflow.state(app).rejections) == 4


# --------------------------------------------------------------------------------------------
# Pollinations
# --------------------------------------------------------------------------------------------


async def test_pollinations_prompt_decoding_and_size() -> None:
    app = fake_pollinations.create_app(expected_key=KEY)
    prompt = "a/b? c#d 100% & e=f + ünïcödé 狐狸 🦊"
    encoded = urllib.parse.quote(prompt, safe="")
    query = "model=flux&width=320&height=200&seed=7&nologo=true"
    async with running(app) as (base, s):
        url = URL(f"{base}/image/{encoded}?{query}&key={KEY}", encoded=True)
        resp = await s.get(url)
        assert resp.status == 200 and resp.content_type == "image/jpeg"
        assert decode(await resp.read()) == ("JPEG", (320, 200))
        st = fake_pollinations.state(app)
        assert st.prompts == [prompt] and st.raw_prompts == [encoded]
        assert st.last.query["seed"] == "7" and st.last.query["nologo"] == "true"
        resp = await s.get(URL(f"{base}/image/x?{query}", encoded=True), headers=AUTH)
        assert resp.status == 200  # Bearer auth works too
        resp = await s.get(URL(f"{base}/image/x?{query}", encoded=True))
        assert resp.status == 401
        resp = await s.get(URL(f"{base}/image/x?model=nope", encoded=True), headers=AUTH)
        assert resp.status == 400
        assert await (await s.get(f"{base}/image/models", headers=AUTH)).json()


# --------------------------------------------------------------------------------------------
# ModelScope
# --------------------------------------------------------------------------------------------


async def test_modelscope_async_flow() -> None:
    app = fake_modelscope.create_app(expected_key=KEY)
    body = {"model": "Tongyi-MAI/Z-Image-Turbo", "prompt": "a cat", "size": "512x768", "seed": 3}
    async with running(app) as (base, s):
        resp = await s.post(f"{base}/v1/images/generations", json=body, headers=AUTH)
        assert resp.status == 400 and (await resp.json())["errors"]["message"]
        resp = await s.post(f"{base}/v1/images/generations", json=body, headers=MS_SUBMIT)
        submitted = await resp.json()
        assert set(submitted) == {"task_id", "request_id"}
        task_url = f"{base}/v1/tasks/{submitted['task_id']}"
        missing = await (await s.get(task_url, headers=AUTH)).json()
        assert missing["errors"] == {"code": 500, "message": "task not found"}
        assert missing["task_status"] == "FAILED"
        statuses = []
        for _ in range(3):
            doc = await (await s.get(task_url, headers=MS_POLL)).json()
            statuses.append(doc["task_status"])
        assert statuses == ["PENDING", "RUNNING", "SUCCEED"]
        image = await (await s.get(doc["output_images"][0])).read()
        assert decode(image) == ("PNG", (512, 768))
        resp = await s.post(
            f"{base}/v1/images/generations", json={**body, "n": 2}, headers=MS_SUBMIT
        )
        assert resp.status == 400  # unsupported parameter
        # poll_failed: the next poll reports FAILED with errors.message, and it sticks.
        st = fake_modelscope.state(app)
        st.fail_next("poll_failed", message="boom")
        doc = await (
            await s.post(f"{base}/v1/images/generations", json=body, headers=MS_SUBMIT)
        ).json()
        for _ in range(2):
            poll = await s.get(f"{base}/v1/tasks/{doc['task_id']}", headers=MS_POLL)
            failed = await poll.json()
            assert failed["task_status"] == "FAILED" and failed["errors"]["message"] == "boom"
    assert st.calls("poll")[-1].headers["x-modelscope-task-type"] == "image_generation"


async def test_modelscope_immediate_success() -> None:
    app = fake_modelscope.create_app(pending_polls=0)
    body = {"model": "m", "prompt": "a cat"}
    async with running(app) as (base, s):
        doc = await (
            await s.post(f"{base}/v1/images/generations", json=body, headers=MS_SUBMIT)
        ).json()
        poll = await (await s.get(f"{base}/v1/tasks/{doc['task_id']}", headers=MS_POLL)).json()
        assert poll["task_status"] == "SUCCEED" and len(poll["output_images"]) == 1


# --------------------------------------------------------------------------------------------
# Hugging Face Gradio Space
# --------------------------------------------------------------------------------------------


async def _gradio_run(
    s: aiohttp.ClientSession, base: str, data: list[Any], headers: dict[str, str] | None = None
) -> list[tuple[str, Any]]:
    resp = await s.post(f"{base}/gradio_api/call/infer", json={"data": data}, headers=headers)
    assert resp.status == 200
    event_id = (await resp.json())["event_id"]
    stream = await s.get(f"{base}/gradio_api/call/infer/{event_id}", headers=headers)
    assert stream.status == 200 and stream.content_type == "text/event-stream"
    return parse_sse(await stream.text())


async def test_gradio_sse_flow_and_relative_url() -> None:
    app = fake_gradio.create_app(expected_key=KEY)
    async with running(app) as (base, s):
        frames = await _gradio_run(s, base, ["a fox", 1234, False, 640, 384, 4], AUTH)
        assert [name for name, _ in frames] == ["heartbeat", "generating", "complete"]
        assert frames[0][1] is None
        file_data, seed = frames[-1][1]
        assert seed == 1234
        assert file_data["meta"] == {"_type": "gradio.FileData"}
        assert file_data["url"] == f"/gradio_api/file={file_data['path']}"
        assert file_data["path"].startswith("/tmp/gradio/")
        assert file_data["path"].endswith("/image.webp")
        assert frames[1][1][0]["url"] != file_data["url"]  # preview is a different file
        resp = await s.get(base + file_data["url"], headers=AUTH)
        assert decode(await resp.read()) == ("WEBP", (640, 384))
        assert (await s.get(base + file_data["url"])).status == 401
        resp = await s.post(f"{base}/gradio_api/call/infer", json={"x": 1}, headers=AUTH)
        assert resp.status == 422 and (await resp.json())["detail"][0]["loc"] == ["body", "data"]
        # Inputs that do not fit the endpoint end the stream with error/null.
        frames = await _gradio_run(s, base, ["only a prompt"], AUTH)
        assert frames[-1] == ("error", None)


async def test_gradio_sse_errors_and_absolute_urls() -> None:
    app = fake_gradio.create_app(absolute_urls=True, generating_frames=0)
    st = fake_gradio.state(app)
    data = ["a fox", 1, True, 64, 64, 4]
    async with running(app) as (base, s):
        frames = await _gradio_run(s, base, data)
        assert [name for name, _ in frames] == ["heartbeat", "complete"]
        assert frames[-1][1][0]["url"].startswith(f"{base}/gradio_api/file=/tmp/gradio/")
        st.fail_next("sse_error")
        frames = await _gradio_run(s, base, data)
        assert frames[-1][0] == "error" and isinstance(frames[-1][1], str)
        assert "GPU quota" in frames[-1][1]
        st.fail_next("sse_error_null")
        assert (await _gradio_run(s, base, data))[-1] == ("error", None)
        st.fail_next("content_policy")
        frames = await _gradio_run(s, base, data)
        assert frames[-1][0] == "error" and "NSFW" in frames[-1][1]
        upload = aiohttp.FormData()
        upload.add_field("files", png_bytes(8, 8), filename="in.png", content_type="image/png")
        paths = await (await s.post(f"{base}/gradio_api/upload", data=upload)).json()
        assert paths[0].startswith("/tmp/gradio/") and paths[0].endswith("/in.png")
        served = await (await s.get(f"{base}/gradio_api/file={paths[0]}")).read()
        assert decode(served) == ("PNG", (8, 8))
    assert [r.endpoint for r in st.requests].count("stream") == 4
