"""POST /v1/chat/completions through the official openai SDK and raw SSE, on the shipped config.

`demo` does generate, edit, blend and variation and draws its input images into its output;
`demo-async` only generates, through submit-and-poll, and reports a percentage while it works.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from PIL import Image, ImageChops, ImageStat

from engine.api import chat
from engine.api.keys import STATE
from engine.demo import upstream as demo_upstream
from engine.dsl.sizes import size_for_ratio
from tests.e2e.providers import config_dir, single
from tests.gateway import REPO, Gateway, run_gateway
from tests.openapi import validate_component
from tests.upstreams import modelscope as fake_ms
from tests.upstreams import serve_upstream

IMAGE_MD = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
SMALL = {"size": "256x160", "seed": 7}
MS_KEY = "ms-" + "0123456789abcdef" * 2


@pytest.fixture
async def sdk(demo_gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=demo_gateway.v1, api_key="unused", max_retries=0, timeout=30
    ) as client:
        yield client


@pytest.fixture
def fast_keepalive(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(chat, "KEEPALIVE_SECONDS", 0.05)
    return 0.05


@pytest.fixture
def upstream_prompts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prompts the demo upstream received (generate, edit and task submissions)."""
    seen: list[str] = []
    original = demo_upstream.build_job

    def recording(payload: Any, inputs: list[bytes], input_size: Any) -> Any:
        seen.append(payload.get("prompt"))
        return original(payload, inputs, input_size)

    monkeypatch.setattr(demo_upstream, "build_job", recording)
    return seen


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def png(color: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def fetch(url: str) -> Image.Image:
    if url.startswith("data:"):
        return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, url
        assert resp.content_type.startswith("image/")
        return Image.open(io.BytesIO(await resp.read()))


def distance(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB").resize(a.size))
    return float(sum(ImageStat.Stat(diff).mean))


async def raw_stream(url: str, body: dict[str, Any]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        return resp.status, (await resp.read()).decode()


def frames(text: str) -> list[str]:
    """SSE frames of a stream, each as its text (`data: ...` or `: comment`)."""
    assert text.endswith("\n\n")
    return [f for f in text.split("\n\n") if f]


def chunks_of(text: str) -> list[dict[str, Any]]:
    found = []
    for frame in frames(text):
        assert not frame.startswith("event:"), frame  # chat chunks carry no event line
        if frame.startswith("data: ") and frame != "data: [DONE]":
            found.append(orjson.loads(frame[len("data: ") :]))
    return found


# --------------------------------------------------------------------------------------------
# plain replies


async def test_reply_is_a_markdown_image_served_by_the_gateway(
    demo_gateway: Gateway, sdk: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    raw = await sdk.chat.completions.with_raw_response.create(
        model="demo",
        messages=[{"role": "system", "content": "You draw."}, user("a lighthouse at dusk")],
        extra_body={"size": "320x240"},
    )
    body = raw.http_response.json()
    validate_component(openai_spec, "CreateChatCompletionResponse", body)
    assert body["id"].startswith("chatcmpl-") and body["model"] == "demo"
    assert body["object"] == "chat.completion"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    for name in ("x-pixgate-provider", "x-pixgate-route", "x-pixgate-attempts", "x-request-id"):
        assert raw.headers[name]
    assert raw.headers["x-pixgate-task"] == "generate"
    completion = raw.parse()
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    urls = IMAGE_MD.findall(choice.message.content or "")
    assert len(urls) == 1 and urls[0].startswith(f"{demo_gateway.url}/files/")
    image = await fetch(urls[0])
    assert image.format == "PNG" and image.size == (320, 240)


async def test_n_images_one_per_line(sdk: openai.AsyncOpenAI) -> None:
    result = await sdk.chat.completions.create(
        model="demo", messages=[user("two foxes")], n=2, extra_body={"size": "64x64"}
    )
    content = result.choices[0].message.content or ""
    lines = content.splitlines()
    assert len(lines) == 2 and all(IMAGE_MD.fullmatch(line) for line in lines)


@pytest.mark.parametrize(
    ("model", "prompt", "ratio", "sent"),
    [
        ("demo", "a cat 16:9", (16, 9), "a cat"),
        ("demo", "a tall tower, --ar 9:16", (9, 16), "a tall tower"),
        ("demo-async", "a wide valley (3:2)", (3, 2), "a wide valley"),
    ],
)
async def test_ratio_at_the_end_of_the_prompt_sets_the_size(
    sdk: openai.AsyncOpenAI,
    upstream_prompts: list[str],
    model: str,
    prompt: str,
    ratio: tuple[int, int],
    sent: str,
) -> None:
    result = await sdk.chat.completions.create(
        model=model, messages=[user(prompt)], extra_body={"delay": 0.01}
    )
    (url,) = IMAGE_MD.findall(result.choices[0].message.content or "")
    image = await fetch(url)
    assert image.format == "PNG" and image.size == size_for_ratio(ratio)
    assert abs(image.size[0] / image.size[1] - ratio[0] / ratio[1]) < 0.05
    assert upstream_prompts == [sent]


async def test_explicit_size_wins_over_the_ratio(
    sdk: openai.AsyncOpenAI, upstream_prompts: list[str]
) -> None:
    result = await sdk.chat.completions.create(
        model="demo", messages=[user("a cat 16:9")], extra_body={"size": "128x128"}
    )
    (url,) = IMAGE_MD.findall(result.choices[0].message.content or "")
    assert (await fetch(url)).size == (128, 128)
    assert upstream_prompts == ["a cat"]


# --------------------------------------------------------------------------------------------
# streaming


async def test_stream_with_the_sdk(sdk: openai.AsyncOpenAI, fast_keepalive: float) -> None:
    stream = await sdk.chat.completions.create(
        model="demo-async",
        messages=[user("a patient cat")],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"delay": 0.3, "size": "128x128"},
    )
    chunks = [chunk async for chunk in stream]
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content == ""
    thinking = [
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks if c.choices
    ]
    lines = [t for t in thinking if t]
    assert lines[0] == "Generating with demo-async…\n"
    progress = [line for line in lines if line.startswith("Progress: ")]
    assert progress, lines
    assert all(a != b for a, b in itertools.pairwise(lines))  # no repeats
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.count("![image](") == 1
    # nothing of the thinking leaks into the answer
    assert "Progress" not in content and "Generating" not in content
    (url,) = IMAGE_MD.findall(content)
    assert (await fetch(url)).size == (128, 128)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


async def test_raw_stream_has_keep_alives_valid_chunks_and_done(
    demo_gateway: Gateway, openai_spec: dict[str, Any], fast_keepalive: float
) -> None:
    status, text = await raw_stream(
        f"{demo_gateway.v1}/chat/completions",
        {
            "model": "demo-async",
            "messages": [user("a slow snail 4:3")],
            "stream": True,
            "delay": 0.4,  # several keep-alive intervals
        },
    )
    assert status == 200
    all_frames = frames(text)
    assert all_frames[-1] == "data: [DONE]"
    assert ": keep-alive" in all_frames
    chunks = chunks_of(text)
    for chunk in chunks:
        # reasoning_content is our extension; the delta schema allows extra fields.
        validate_component(openai_spec, "CreateChatCompletionStreamResponse", chunk)
        assert chunk["object"] == "chat.completion.chunk"
        assert "usage" not in chunk  # include_usage was not asked for
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


async def test_stream_usage_chunk_is_valid(
    demo_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    status, text = await raw_stream(
        f"{demo_gateway.v1}/chat/completions",
        {
            "model": "demo",
            "messages": [user("a quick fox")],
            "stream": True,
            "stream_options": {"include_usage": True},
            "size": "64x64",
        },
    )
    assert status == 200
    chunks = chunks_of(text)
    for chunk in chunks:
        validate_component(openai_spec, "CreateChatCompletionStreamResponse", chunk)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] > 0


async def test_status_words_of_a_polled_provider_become_thinking_lines(tmp_path: Path) -> None:
    """ModelScope reports `task_status` (PENDING, then RUNNING) while it is polled."""
    app = fake_ms.create_app(expected_key=MS_KEY, pending_polls=3)
    async with serve_upstream(app) as base:
        env = {"MODELSCOPE_BASE_URL": f"{base}/v1", "MODELSCOPE_API_KEYS": MS_KEY}
        root = config_dir(tmp_path, ["modelscope"], single("modelscope", "Qwen/Qwen-Image"))
        async with (
            run_gateway(root, tmp_path / "files", env) as gw,
            openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30) as sdk,
        ):
            stream = await sdk.chat.completions.create(
                model="m", messages=[user("a golden cat 3:2")], stream=True
            )
            chunks = [chunk async for chunk in stream]
    thinking = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks]
    assert [t for t in thinking if t] == ["Generating with m…\n", "Queued…\n", "Running…\n"]
    polls = fake_ms.state(app).calls("poll")
    assert len(polls) == 4  # PENDING, RUNNING, RUNNING, SUCCEED: each line sent once
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert IMAGE_MD.fullmatch(content)
    assert fake_ms.state(app).calls("submit")[0].json["size"] == "1280x832"


async def test_error_after_the_stream_started_is_an_error_chunk(
    demo_gateway: Gateway, sdk: openai.AsyncOpenAI
) -> None:
    stream = await sdk.chat.completions.create(
        model="demo-async",
        messages=[user("[demo:fail] please")],
        stream=True,
        extra_body={"delay": 0.05},
    )
    seen = []
    with pytest.raises(openai.APIError) as err:
        async for chunk in stream:
            seen.append(chunk)
    assert "demo task failed as requested" in err.value.message
    assert seen and seen[0].choices[0].delta.role == "assistant"

    status, text = await raw_stream(
        f"{demo_gateway.v1}/chat/completions",
        {"model": "demo-async", "messages": [user("[demo:fail]")], "stream": True, "delay": 0.01},
    )
    assert status == 200
    tail = frames(text)[-2:]
    assert tail[1] == "data: [DONE]"
    error = orjson.loads(tail[0][len("data: ") :])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "upstream_error" and "demo task failed" in error["message"]


async def test_error_before_the_stream_is_a_plain_404(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        await sdk.chat.completions.create(model="no-such-model", messages=[user("x")], stream=True)
    assert err.value.code == "model_not_found"


async def test_client_disconnect_cancels_the_upstream_job(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_keepalive: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pixgate.chat")
    polls: list[str] = []
    polling = asyncio.Event()
    original = demo_upstream.get_task

    async def counting(request: aiohttp.web.Request) -> aiohttp.web.Response:
        polls.append(request.match_info["task_id"])
        if len(polls) > 2:
            polling.set()
        return await original(request)

    monkeypatch.setattr(demo_upstream, "get_task", counting)
    async with run_gateway(REPO, tmp_path / "files") as gw:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{gw.v1}/chat/completions",
                json={
                    "model": "demo-async",
                    "messages": [user("a very slow render")],
                    "stream": True,
                    "delay": 10,
                },
            )
            assert (await resp.content.readline()).startswith(b"data: ")
            async with asyncio.timeout(5):
                await polling.wait()
            resp.close()  # the client goes away mid-stream
        await asyncio.sleep(10 * fast_keepalive)  # the next keep-alive finds the client gone
        assert any("client went away" in r.getMessage() for r in caplog.records)
        count = len(polls)
        await asyncio.sleep(0.3)
        assert len(polls) == count, "the gateway kept polling after the client left"
        leftovers = [t for t in asyncio.all_tasks() if _gateway_task(t)]
        assert leftovers == []
        connector = gw.app[STATE].service.session.connector
        assert connector is not None and not connector._acquired  # no upstream connection held


def _gateway_task(task: asyncio.Task[Any]) -> bool:
    """A task running gateway request code (chat handler work, the image service)."""
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return not task.done() and ("engine/api" in filename or "engine/runtime" in filename)


# --------------------------------------------------------------------------------------------
# inputs and conversation context


async def test_follow_up_edits_the_last_image_of_the_conversation(
    demo_gateway: Gateway, sdk: openai.AsyncOpenAI
) -> None:
    first = await sdk.chat.completions.with_raw_response.create(
        model="demo", messages=[user("a red fox in snow")], extra_body=SMALL
    )
    assert first.headers["x-pixgate-task"] == "generate"
    answer = first.parse().choices[0].message.content or ""
    (first_url,) = IMAGE_MD.findall(answer)
    original = await fetch(first_url)

    history = [
        user("a red fox in snow"),
        {"role": "assistant", "content": answer},
        user("make it purple"),
    ]
    second = await sdk.chat.completions.with_raw_response.create(
        model="demo", messages=history, extra_body=SMALL
    )
    assert second.headers["x-pixgate-task"] == "edit"
    (edited_url,) = IMAGE_MD.findall(second.parse().choices[0].message.content or "")
    edited = await fetch(edited_url)

    # The same prompt and seed without an input image: the demo draws inputs into its output,
    # so the edit must be much closer to the first image than a fresh generation is.
    fresh = await sdk.images.generate(
        model="demo",
        prompt="make it purple",
        size="256x160",
        response_format="b64_json",
        extra_body={"seed": 7},
    )
    plain = Image.open(io.BytesIO(base64.b64decode(fresh.data[0].b64_json or "")))
    assert edited.size == plain.size == (256, 160)
    assert distance(edited, original) < 0.8 * distance(plain, original)


async def test_a_model_that_cannot_edit_generates_afresh(sdk: openai.AsyncOpenAI) -> None:
    history = [
        user("a fox"),
        {"role": "assistant", "content": f"![image]({data_uri(png((255, 0, 0)))})"},
        user("make it purple"),
    ]
    raw = await sdk.chat.completions.with_raw_response.create(
        model="demo-async", messages=history, extra_body={"delay": 0.01, "size": "64x64"}
    )
    assert raw.headers["x-pixgate-task"] == "generate"


@pytest.mark.parametrize(
    ("parts", "task"),
    [
        ([{"type": "image_url", "image_url": {"url": "RED"}}], "edit"),
        (
            [
                {"type": "image_url", "image_url": {"url": "RED"}},
                {"type": "image_url", "image_url": {"url": "BLUE"}},
            ],
            "blend",
        ),
        ([], "variation"),
    ],
)
async def test_user_images_choose_the_task(
    sdk: openai.AsyncOpenAI,
    upstream_prompts: list[str],
    parts: list[dict[str, Any]],
    task: str,
) -> None:
    images = {"RED": data_uri(png((255, 0, 0))), "BLUE": data_uri(png((0, 0, 255)))}
    for part in parts:
        part["image_url"]["url"] = images[part["image_url"]["url"]]
    text = {"type": "text", "text": "put them on a beach"}
    if task == "variation":  # an image and no words
        content: list[dict[str, Any]] = [{"type": "text", "text": f"![photo]({images['RED']})"}]
    else:
        content = [text, *parts]
    raw = await sdk.chat.completions.with_raw_response.create(
        model="demo", messages=[user(content)], extra_body={"size": "128x96"}
    )
    assert raw.headers["x-pixgate-task"] == task
    (url,) = IMAGE_MD.findall(raw.parse().choices[0].message.content or "")
    image = (await fetch(url)).convert("RGB")
    assert image.size == (128, 96)
    if task != "variation":
        assert upstream_prompts == ["put them on a beach"]
    # The first input is the output's faded background: red dominates a red input's edit.
    r, g, b = ImageStat.Stat(image).mean
    assert r > b and r > g


async def test_markdown_image_of_a_gateway_file_is_read_from_storage(
    demo_gateway: Gateway, sdk: openai.AsyncOpenAI, upstream_prompts: list[str]
) -> None:
    made = await sdk.images.generate(
        model="demo", prompt="a boat", size="96x64", response_format="url"
    )
    url = made.data[0].url or ""
    raw = await sdk.chat.completions.with_raw_response.create(
        model="demo",
        messages=[user(f"![boat]({url}) paint it gold 1:1")],
        extra_body={"size": "64x64"},
    )
    assert raw.headers["x-pixgate-task"] == "edit"
    assert upstream_prompts[-1] == "paint it gold"


async def test_route_options_inline_images_and_no_context_edits(tmp_path: Path) -> None:
    routes = {
        "demo": True,
        "routes": {
            "inline": {
                "targets": [{"provider": "demo", "model": "demo-v1"}],
                "chat_image_format": "data_uri",
                "chat_context_edit": False,
            }
        },
    }
    root = config_dir(tmp_path, ["demo"], routes)
    async with (
        run_gateway(root, tmp_path / "files") as gw,
        openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30) as sdk,
    ):
        history = [
            user("a fox"),
            {"role": "assistant", "content": f"![image]({data_uri(png((255, 0, 0)))})"},
            user("make it purple"),
        ]
        raw = await sdk.chat.completions.with_raw_response.create(
            model="inline", messages=history, extra_body={"size": "96x64"}
        )
        assert raw.headers["x-pixgate-task"] == "generate"
        (url,) = IMAGE_MD.findall(raw.parse().choices[0].message.content or "")
        assert url.startswith("data:image/png;base64,")
        assert (await fetch(url)).size == (96, 64)


# --------------------------------------------------------------------------------------------
# errors


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"model": "demo"}, "messages"),
    ({"model": "demo", "messages": []}, "messages"),
    ({"model": "demo", "messages": [{"role": "system", "content": "hi"}]}, "messages"),
    ({"model": "demo", "messages": ["hi"]}, "messages[0]"),
    ({"model": "demo", "messages": [{"content": "hi"}]}, "messages[0].role"),
    ({"model": "demo", "messages": [user("   ")]}, "messages[0].content"),
    ({"model": "demo", "messages": [user("16:9")]}, "messages[0].content"),
    ({"model": "demo", "messages": [user(5)]}, "messages[0].content"),
    ({"model": "demo", "messages": [user(["text"])]}, "messages[0].content[0]"),
    (
        {"model": "demo", "messages": [user([{"type": "input_audio", "input_audio": {}}])]},
        "messages[0].content[0].type",
    ),
    (
        {"model": "demo", "messages": [user([{"type": "image_url", "image_url": {}}])]},
        "messages[0].content[0].image_url",
    ),
    (
        {
            "model": "demo",
            "messages": [user([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}])],
        },
        "messages[0].content[0].image_url",
    ),
    ({"model": "demo", "messages": [user("x")], "n": 11}, "n"),
    ({"model": "demo", "messages": [user("x")], "size": "huge"}, "size"),
    ({"model": "demo", "messages": [user("x")], "stream": "yes"}, "stream"),
    (
        {"model": "demo", "messages": [user("x")], "stream": True, "stream_options": 1},
        "stream_options",
    ),
    (
        {
            "model": "demo-async",
            "messages": [user([{"type": "image_url", "image_url": {"url": "AAAA"}}])],
            "stream": True,
        },
        "model",
    ),
]


async def test_bad_requests_are_400s_naming_the_parameter(
    demo_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    async with aiohttp.ClientSession() as http:
        for body, param in BAD_REQUESTS:
            async with http.post(f"{demo_gateway.v1}/chat/completions", json=body) as resp:
                assert resp.status == 400, (body, await resp.text())
                assert resp.content_type == "application/json"
                error = await resp.json()
            validate_component(openai_spec, "ErrorResponse", error)
            assert error["error"]["param"] == param, (body, error)


async def test_get_is_405_and_unknown_paths_404(demo_gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{demo_gateway.v1}/chat/completions") as resp:
            assert resp.status == 405
            assert (await resp.json())["error"]["code"] == "method_not_allowed"
        async with http.post(f"{demo_gateway.v1}/chat/completion", json={}) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "not_found"
