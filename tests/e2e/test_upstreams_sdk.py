"""Each shipped provider file against a fake upstream speaking its protocol, via the openai SDK."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from PIL import Image

from tests.e2e.providers import config_dir, single
from tests.gateway import run_gateway
from tests.openapi import validate_component
from tests.upstreams import huggingface_space as fake_hf
from tests.upstreams import modelscope as fake_ms
from tests.upstreams import openai as fake_openai
from tests.upstreams import pollinations as fake_poll
from tests.upstreams import serve_upstream
from tests.upstreams import siliconflow as fake_sf

OPENAI_KEY = "sk-proj-" + "A" * 40
MS_KEY = "ms-" + "0123456789abcdef" * 2


def size_of(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64))).size


async def fetch_size(url: str) -> tuple[int, int]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, url
        return Image.open(io.BytesIO(await resp.read())).size


@pytest.fixture
async def sdk_for(tmp_path: Path) -> AsyncIterator[Any]:
    """sdk_for(providers, routes, env) -> an AsyncOpenAI client on a fresh gateway."""
    stack: list[Any] = []

    async def make(
        providers: list[str], routes: dict[str, object], env: dict[str, str]
    ) -> openai.AsyncOpenAI:
        cm = run_gateway(config_dir(tmp_path, providers, routes), tmp_path / "files", env)
        gw = await cm.__aenter__()
        stack.append(cm)
        client = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30)
        stack.append(client)
        return client

    yield make
    for item in reversed(stack):
        if isinstance(item, openai.AsyncOpenAI):
            await item.close()
        else:
            await item.__aexit__(None, None, None)


async def test_openai_gpt_image_url_and_b64(sdk_for: Any, openai_spec: dict[str, Any]) -> None:
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        sdk = await sdk_for(["openai"], single("openai", "gpt-image-1"), env)
        raw = await sdk.images.with_raw_response.generate(
            model="m", prompt="a fox", size="1024x1024", response_format="url"
        )
        body = raw.http_response.json()
        validate_component(openai_spec, "ImagesResponse", body)
        sent = fake_openai.state(app).last.json
        assert "response_format" not in sent  # gpt-image rejects it; the YAML leaves it out
        assert sent["model"] == "gpt-image-1" and sent["size"] == "1024x1024"
        assert body["usage"]["total_tokens"] > 0
        assert await fetch_size(body["data"][0]["url"]) == (1024, 1024)

        b64 = await sdk.images.generate(model="m", prompt="a fox", response_format="b64_json")
        assert size_of(b64.data[0].b64_json or "") == (1024, 1024)


async def test_openai_dall_e_3_url_passthrough_and_revised_prompt(sdk_for: Any) -> None:
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        sdk = await sdk_for(["openai"], single("openai", "dall-e-3"), env)
        raw = await sdk.images.with_raw_response.generate(
            model="m", prompt="a red fox", size="1792x1024", style="natural"
        )
        result = raw.parse()
        assert result.data[0].url.startswith(base)  # upstream URL passed through
        assert result.data[0].revised_prompt == fake_openai.revise_prompt("a red fox")
        assert fake_openai.state(app).last.json["style"] == "natural"
        assert await fetch_size(result.data[0].url or "") == (1792, 1024)


async def test_size_is_mapped_to_the_nearest_allowed(sdk_for: Any) -> None:
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        sdk = await sdk_for(["openai"], single("openai", "gpt-image-1"), env)
        raw = await sdk.images.with_raw_response.generate(
            model="m", prompt="wide", size="1792x1024", response_format="b64_json"
        )
        assert raw.headers["x-pixgate-size"] == "1536x1024"
        assert size_of(raw.parse().data[0].b64_json or "") == (1536, 1024)


async def test_siliconflow_batches_kolors_in_one_call(sdk_for: Any) -> None:
    app = fake_sf.create_app(expected_key="sf-key")
    async with serve_upstream(app) as base:
        env = {"SILICONFLOW_BASE_URL": f"{base}/v1", "SILICONFLOW_API_KEYS": "sf-key"}
        sdk = await sdk_for(["siliconflow"], single("siliconflow", "Kwai-Kolors/Kolors"), env)
        result = await sdk.images.generate(
            model="m", prompt="lighthouse", n=2, size="1024x1024", extra_body={"seed": 42}
        )
        calls = fake_sf.state(app).calls("generations")
        assert len(calls) == 1
        assert calls[0].json["batch_size"] == 2 and calls[0].json["seed"] == 42
        assert len(result.data) == 2
        assert [await fetch_size(d.url or "") for d in result.data] == [(1024, 1024)] * 2


async def test_pollinations_prompt_survives_the_path(sdk_for: Any) -> None:
    app = fake_poll.create_app()
    async with serve_upstream(app) as base:
        env = {"POLLINATIONS_BASE_URL": base}
        sdk = await sdk_for(["pollinations"], single("pollinations", "flux"), env)
        prompt = "a/b? c#d 100% café"
        result = await sdk.images.generate(
            model="m", prompt=prompt, size="512x384", response_format="b64_json"
        )
        assert fake_poll.state(app).prompts == [prompt]
        assert fake_poll.state(app).last.query["width"] == "512"
        assert size_of(result.data[0].b64_json or "") == (512, 384)


async def test_pollinations_partial_failure_is_reported(sdk_for: Any) -> None:
    app = fake_poll.create_app()
    async with serve_upstream(app) as base:
        env = {"POLLINATIONS_BASE_URL": base}
        sdk = await sdk_for(["pollinations"], single("pollinations", "flux"), env)
        fake_poll.state(app).fail_next("server_error")
        raw = await sdk.images.with_raw_response.generate(
            model="m", prompt="two", n=2, size="64x64", response_format="b64_json"
        )
        assert len(raw.parse().data) == 1
        assert raw.headers["x-pixgate-failed"] == "1"
        seeds = {r.query["seed"] for r in fake_poll.state(app).requests}
        assert len(seeds) == 2  # each call got its own seed, not the upstream's default 42


async def test_modelscope_submit_and_poll(sdk_for: Any) -> None:
    app = fake_ms.create_app(expected_key=MS_KEY, pending_polls=2)
    async with serve_upstream(app) as base:
        env = {"MODELSCOPE_BASE_URL": f"{base}/v1", "MODELSCOPE_API_KEYS": MS_KEY}
        sdk = await sdk_for(["modelscope"], single("modelscope", "Tongyi-MAI/Z-Image-Turbo"), env)
        result = await sdk.images.generate(
            model="m", prompt="a golden cat", size="768x512", response_format="b64_json"
        )
        assert size_of(result.data[0].b64_json or "") == (768, 512)
        fake = fake_ms.state(app)
        assert len(fake.calls("poll")) == 3  # PENDING/RUNNING twice, then SUCCEED
        assert fake.rejections == []


async def test_modelscope_failed_task_keeps_the_reason(sdk_for: Any) -> None:
    app = fake_ms.create_app(expected_key=MS_KEY, pending_polls=1)
    async with serve_upstream(app) as base:
        env = {"MODELSCOPE_BASE_URL": f"{base}/v1", "MODELSCOPE_API_KEYS": MS_KEY}
        sdk = await sdk_for(["modelscope"], single("modelscope", "Tongyi-MAI/Z-Image-Turbo"), env)
        fake_ms.state(app).fail_next("poll_failed", on="poll", message="GPU fell over")
        with pytest.raises(openai.APIStatusError) as err:
            await sdk.images.generate(model="m", prompt="a cat")
        assert err.value.status_code == 502
        assert "GPU fell over" in err.value.message


async def test_gradio_space_sse_with_relative_file_url(sdk_for: Any) -> None:
    app = fake_hf.create_app()
    async with serve_upstream(app) as base:
        env = {"HUGGINGFACE_SPACE_BASE_URL": base}
        routes = single("huggingface-space", "black-forest-labs/FLUX.1-schnell")
        sdk = await sdk_for(["huggingface-space"], routes, env)
        result = await sdk.images.generate(
            model="m", prompt="a space cat", size="512x512", response_format="b64_json"
        )
        assert size_of(result.data[0].b64_json or "") == (512, 512)
        submit = fake_hf.state(app).calls("submit")[0].json
        assert submit["data"][0] == "a space cat" and submit["data"][3:5] == [512, 512]


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        # The fake's error event is a ZeroGPU quota message: the YAML rule makes it `quota`.
        ("sse_error", 429, "insufficient_quota"),
        ("sse_error_null", 502, "upstream_error"),
    ],
)
async def test_gradio_space_error_events(sdk_for: Any, kind: str, status: int, code: str) -> None:
    app = fake_hf.create_app()
    async with serve_upstream(app) as base:
        env = {"HUGGINGFACE_SPACE_BASE_URL": base}
        routes = single("huggingface-space", "black-forest-labs/FLUX.1-schnell")
        sdk = await sdk_for(["huggingface-space"], routes, env)
        fake_hf.state(app).fail_next(kind, on="stream")
        with pytest.raises(openai.APIStatusError) as err:
            await sdk.images.generate(model="m", prompt="x")
        assert err.value.status_code == status
        assert err.value.code == code


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("rate_limit", 429, "rate_limit_exceeded"),
        ("bad_key", 502, "upstream_auth_failed"),
        ("server_error", 502, "upstream_error"),
        ("malformed", 502, "upstream_error"),
        ("content_policy", 400, "content_policy_violation"),
    ],
)
async def test_openai_failures_map_to_client_errors(
    sdk_for: Any, kind: str, status: int, code: str, openai_spec: dict[str, Any]
) -> None:
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        sdk = await sdk_for(["openai"], single("openai", "gpt-image-1"), env)
        fake_openai.state(app).fail_next(kind)
        with pytest.raises(openai.APIStatusError) as err:
            await sdk.images.generate(model="m", prompt="x")
        assert err.value.status_code == status
        validate_component(openai_spec, "ErrorResponse", err.value.response.json())
        assert err.value.code == code
        assert OPENAI_KEY not in err.value.message
        if kind == "rate_limit":
            assert err.value.response.headers["retry-after"] == "7"


async def test_upstream_timeout_is_a_504(sdk_for: Any) -> None:
    app = fake_openai.create_app(expected_key=OPENAI_KEY, hang_seconds=5)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        sdk = await sdk_for(["openai"], single("openai", "gpt-image-1", timeout="1s"), env)
        fake_openai.state(app).fail_next("timeout")
        with pytest.raises(openai.APIStatusError) as err:
            await sdk.images.generate(model="m", prompt="x")
        assert err.value.status_code == 504


async def test_failover_to_the_next_target_and_no_failover_on_content_policy(
    sdk_for: Any,
) -> None:
    first, second = fake_openai.create_app(expected_key=OPENAI_KEY), fake_sf.create_app()
    async with serve_upstream(first) as base1, serve_upstream(second) as base2:
        env = {
            "OPENAI_BASE_URL": f"{base1}/v1",
            "OPENAI_API_KEYS": OPENAI_KEY,
            "SILICONFLOW_BASE_URL": f"{base2}/v1",
            "SILICONFLOW_API_KEYS": "sf-key",
        }
        targets = [
            {"provider": "openai", "model": "gpt-image-1", "priority": 1},
            {"provider": "siliconflow", "model": "Kwai-Kolors/Kolors"},
        ]
        sdk = await sdk_for(["openai", "siliconflow"], {"routes": {"m": {"targets": targets}}}, env)
        fake_openai.state(first).fail_next("server_error")
        raw = await sdk.images.with_raw_response.generate(model="m", prompt="x")
        assert raw.headers["x-pixgate-provider"] == "siliconflow"
        assert raw.headers["x-pixgate-attempts"] == "2"

        fake_openai.state(first).fail_next("content_policy")
        before = len(fake_sf.state(second).requests)
        with pytest.raises(openai.BadRequestError):
            await sdk.images.generate(model="m", prompt="x")
        assert len(fake_sf.state(second).requests) == before


async def test_rate_limited_key_rotates_to_the_next_key(
    sdk_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = [OPENAI_KEY, "sk-proj-" + "B" * 40]
    app = fake_openai.create_app()
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": ",".join(keys)}
        sdk = await sdk_for(["openai"], single("openai", "gpt-image-1"), env)
        fake_openai.state(app).fail_next("rate_limit")
        raw = await sdk.images.with_raw_response.generate(model="m", prompt="x")
        assert raw.headers["x-pixgate-attempts"] == "2"
        used = [r.headers["authorization"] for r in fake_openai.state(app).requests]
        assert sorted(used) == sorted(f"Bearer {k}" for k in keys)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert all(k not in logged for k in keys)
