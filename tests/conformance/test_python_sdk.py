"""Client conformance: the official openai Python SDK drives every endpoint (models list and
retrieve, generations, edits, variations, blend, image streams, chat completions whole and
streamed, errors), and every response and stream event is validated strictly against OpenAI's
published spec (tests/openapi.py). The gateway runs the shipped config (the offline demo
upstream); the default response_format tests add the shipped openai file on a fake OpenAI."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.e2e.providers import config_dir
from tests.gateway import Gateway, run_gateway
from tests.openapi import validate_component
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream

OPENAI_KEY = "sk-proj-" + "C" * 40


@pytest.fixture
async def client(demo_gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=demo_gateway.v1, api_key="unused", max_retries=0, timeout=30
    ) as sdk:
        yield sdk


def sdk(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.v1, api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
async def openai_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The shipped openai provider file on a fake OpenAI API; routes `gpt-image-1` and
    `dall-e-3` (model defaults), and `demo-b64` (the demo with a route default)."""
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    routes = {
        "demo": True,
        "routes": {
            "gpt-image-1": {"targets": [{"provider": "openai", "model": "gpt-image-1"}]},
            "dall-e-3": {"targets": [{"provider": "openai", "model": "dall-e-3"}]},
            "demo-b64": {
                "response_format": "b64_json",
                "targets": [{"provider": "demo", "model": "demo-v1"}],
            },
        },
    }
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        cfg = config_dir(tmp_path, ["openai", "demo"], routes)
        async with run_gateway(cfg, tmp_path / "files", env) as gw:
            yield gw


def check(spec: dict[str, Any], name: str, raw: Any) -> Any:
    """Validate a with_raw_response result's JSON body, then parse it as the SDK does."""
    validate_component(spec, name, raw.http_response.json())
    return raw.parse()


# ---------------------------------------------------------------------------------------------
# Models


async def test_models_list_and_retrieve(
    client: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    listed = check(openai_spec, "ListModelsResponse", await client.models.with_raw_response.list())
    ids = [m.id for m in listed.data]
    assert {"demo", "demo-async", "demo/demo-v1"} <= set(ids)
    for model_id in ids:  # every listed id, including `provider/model` ones, can be retrieved
        raw = await client.models.with_raw_response.retrieve(model_id)
        model = check(openai_spec, "Model", raw)
        assert (model.id, model.object) == (model_id, "model")


async def test_retrieve_unknown_model_is_a_404_openai_error(
    client: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        await client.models.retrieve("no-such/model")
    body = err.value.response.json()
    validate_component(openai_spec, "ErrorResponse", body)
    assert body["error"]["code"] == "model_not_found"
    assert "no-such/model" in body["error"]["message"]


# ---------------------------------------------------------------------------------------------
# The default response_format: OpenAI's own example (`b64decode(result.data[0].b64_json)`)
# works on gpt-image models without naming it


async def test_gpt_image_answers_b64_json_when_the_client_names_no_format(
    openai_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    async with sdk(openai_gateway) as client:
        raw = await client.images.with_raw_response.generate(model="gpt-image-1", prompt="a fox")
        result = check(openai_spec, "ImagesResponse", raw)
        assert result.data[0].b64_json and result.data[0].url is None
        asked = await client.images.generate(
            model="gpt-image-1", prompt="a fox", response_format="url"
        )
        assert asked.data[0].url and asked.data[0].b64_json is None  # the client's word wins
        dalle = await client.images.generate(model="dall-e-3", prompt="a fox")
        assert dalle.data[0].url and dalle.data[0].b64_json is None  # as OpenAI: url


async def test_a_route_declares_its_default_format(
    openai_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    async with sdk(openai_gateway) as client:
        raw = await client.images.with_raw_response.generate(model="demo-b64", prompt="a fox")
        assert check(openai_spec, "ImagesResponse", raw).data[0].b64_json


# ---------------------------------------------------------------------------------------------
# Images: every endpoint through the SDK (blend through its raw `post`: the SDK has no method)


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


async def test_generations_url_and_b64(
    client: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    for fmt in ("url", "b64_json"):
        raw = await client.images.with_raw_response.generate(
            model="demo", prompt="a lighthouse", n=2, size="256x256", response_format=fmt
        )
        result = check(openai_spec, "ImagesResponse", raw)
        assert len(result.data) == 2 and all(getattr(d, fmt) for d in result.data)


async def test_edits_variations_and_blend(
    client: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    raw = await client.images.with_raw_response.edit(
        model="demo", prompt="make it blue", image=("red.png", red, "image/png"), size="256x256"
    )
    assert check(openai_spec, "ImagesResponse", raw).data[0].url
    raw = await client.images.with_raw_response.create_variation(
        model="demo", image=("red.png", red, "image/png"), size="256x256",
        response_format="b64_json",
    )  # fmt: skip
    assert check(openai_spec, "ImagesResponse", raw).data[0].b64_json
    uri = "data:image/png;base64," + base64.b64encode(blue).decode()
    body = {"model": "demo", "prompt": "mix", "size": "256x256",
            "images": [{"image_url": uri}, base64.b64encode(red).decode()]}  # fmt: skip
    blended = await client.post("/images/blend", body=body, cast_to=httpx.Response)
    assert blended.status_code == 200
    validate_component(openai_spec, "ImagesResponse", blended.json())


async def test_image_streams(client: openai.AsyncOpenAI, openai_spec: dict[str, Any]) -> None:
    schemas = {
        "image_generation.completed": "ImageGenCompletedEvent",
        "image_edit.completed": "ImageEditCompletedEvent",
    }
    stream = await client.images.generate(
        model="demo", prompt="a kite", size="1024x1024", stream=True, partial_images=1
    )
    events = [e.to_dict() async for e in stream]
    stream = await client.images.edit(
        model="demo", prompt="a kite", image=("red.png", png((255, 0, 0)), "image/png"),
        size="1536x1024", stream=True,
    )  # fmt: skip
    events += [e.to_dict() async for e in stream]
    assert [e["type"] for e in events] == list(schemas)
    for event in events:
        validate_component(openai_spec, schemas[event["type"]], event)
    assert [e["size"] for e in events] == ["1024x1024", "1536x1024"]


async def test_image_errors_are_openai_errors(
    client: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    for call, error in (
        (client.images.generate(model="no-such-model", prompt="x"), openai.NotFoundError),
        (client.images.generate(model="demo", prompt="x", n=99), openai.BadRequestError),
    ):
        with pytest.raises(error) as err:
            await call
        validate_component(openai_spec, "ErrorResponse", err.value.response.json())


# ---------------------------------------------------------------------------------------------
# Chat completions, whole and streamed


async def test_chat_completion(client: openai.AsyncOpenAI, openai_spec: dict[str, Any]) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "a red fox 16:9"}]
    )
    completion = check(openai_spec, "CreateChatCompletionResponse", raw)
    assert "![" in (completion.choices[0].message.content or "")


async def test_chat_completion_stream(
    client: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    stream = await client.chat.completions.create(
        model="demo", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "a red fox"}],
    )  # fmt: skip
    chunks = [chunk.to_dict() async for chunk in stream]
    assert chunks
    for chunk in chunks:
        validate_component(openai_spec, "CreateChatCompletionStreamResponse", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "![" in text
