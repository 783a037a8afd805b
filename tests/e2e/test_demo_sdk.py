"""The quick start, driven by the official openai SDK: the shipped config and its demo upstream."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from PIL import Image

from tests.gateway import Gateway
from tests.openapi import validate_component


@pytest.fixture
async def sdk(demo_gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=demo_gateway.v1, api_key="unused", max_retries=0, timeout=30
    ) as client:
        yield client


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


async def fetch_image(url: str) -> Image.Image:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert resp.content_type.startswith("image/")
        return Image.open(io.BytesIO(await resp.read()))


async def test_generate_b64_json_has_requested_size(
    demo_gateway: Gateway, sdk: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    raw = await sdk.images.with_raw_response.generate(
        model="demo", prompt="a lighthouse at dusk", size="512x256", response_format="b64_json"
    )
    validate_component(openai_spec, "ImagesResponse", raw.http_response.json())
    assert raw.headers["x-pixgate-provider"] == "demo"
    assert raw.headers["x-request-id"]
    result = raw.parse()
    assert len(result.data) == 1
    image = decode(result.data[0].b64_json or "")
    assert image.size == (512, 256)
    assert image.format == "PNG"


async def test_generate_url_is_served_by_the_gateway(
    demo_gateway: Gateway, sdk: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    raw = await sdk.images.with_raw_response.generate(
        model="demo", prompt="a red fox", size="320x240", response_format="url"
    )
    validate_component(openai_spec, "ImagesResponse", raw.http_response.json())
    url = raw.parse().data[0].url or ""
    assert url.startswith(f"{demo_gateway.url}/files/")
    assert (await fetch_image(url)).size == (320, 240)


async def test_n_images_are_distinct(demo_gateway: Gateway, sdk: openai.AsyncOpenAI) -> None:
    result = await sdk.images.generate(
        model="demo", prompt="two foxes", n=2, size="128x128", response_format="b64_json"
    )
    blobs = [item.b64_json for item in result.data]
    assert len(blobs) == 2 and blobs[0] != blobs[1]


async def test_async_demo_polls_to_completion(
    demo_gateway: Gateway, sdk: openai.AsyncOpenAI
) -> None:
    raw = await sdk.images.with_raw_response.generate(
        model="demo-async",
        prompt="a patient cat",
        size="256x256",
        response_format="url",
        extra_body={"delay": 0.2},
    )
    assert raw.headers["x-pixgate-provider"] == "demo-async"
    url = raw.parse().data[0].url or ""
    # demo-async rehosts: the URL is the gateway's own, not the upstream's.
    assert url.startswith(f"{demo_gateway.url}/files/")
    assert (await fetch_image(url)).size == (256, 256)


async def test_async_demo_failure_is_a_502_with_the_upstream_reason(
    demo_gateway: Gateway,
    sdk: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        await sdk.images.generate(
            model="demo-async", prompt="[demo:fail] please", extra_body={"delay": 0.1}
        )
    assert err.value.status_code == 502
    assert "demo task failed as requested" in err.value.message


async def test_default_model_and_size(demo_gateway: Gateway, sdk: openai.AsyncOpenAI) -> None:
    result = await sdk.images.generate(prompt="no model named", response_format="b64_json")
    assert decode(result.data[0].b64_json or "").size == (1024, 1024)


async def test_models_lists_the_routes(demo_gateway: Gateway, sdk: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in sdk.models.list()]
    assert models[:2] == ["demo", "demo-async"]
    assert "gpt-image-1" not in models  # no OPENAI_API_KEYS in the test environment


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "size": "big"}, "size"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
    ],
)
async def test_bad_input_is_a_400_naming_the_parameter(
    demo_gateway: Gateway,
    sdk: openai.AsyncOpenAI,
    kwargs: dict[str, Any],
    param: str,
    openai_spec: dict[str, Any],
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await sdk.images.generate(model="demo", **kwargs)
    body = err.value.response.json()
    validate_component(openai_spec, "ErrorResponse", body)
    assert body["error"]["param"] == param


async def test_unknown_model_is_a_404(demo_gateway: Gateway, sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        await sdk.images.generate(model="no-such-model", prompt="x")
    assert "no-such-model" in err.value.message
    assert err.value.code == "model_not_found"


async def test_malformed_json_and_unknown_paths(
    demo_gateway: Gateway, sdk: openai.AsyncOpenAI
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{demo_gateway.v1}/images/generations",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "invalid_json"
        async with http.get(f"{demo_gateway.v1}/nothing/here") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
        async with http.get(f"{demo_gateway.url}/files/not-a-real-file.png") as resp:
            assert resp.status == 404


async def test_access_log_has_one_line_per_request(
    demo_gateway: Gateway, sdk: openai.AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pixgate.access")
    raw = await sdk.images.with_raw_response.generate(
        model="demo", prompt="log me", size="64x64", response_format="b64_json"
    )
    request_id = raw.headers["x-request-id"]
    lines = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
    assert len(lines) == 1
    line = lines[0]
    for part in ("model=demo", "provider=demo", "status=200", "duration_ms="):
        assert part in line
