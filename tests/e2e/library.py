"""The provider library's end-to-end cases: each shipped provider file, its fake upstream, and
what the openai SDK sends and gets (used by test_library_sdk.py).

A case names the provider and model, builds the fake upstream app, and says how the gateway
reaches it (the env for its base URL and key). Every fake follows its provider's documented
protocol (tests/upstreams/<provider>.py) and understands `fail_next("server_error")` and
`fail_next("content_policy")`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.upstreams import azure_openai as fake_azure
from tests.upstreams import bfl as fake_bfl
from tests.upstreams import chat_images as fake_chat
from tests.upstreams import cloudflare as fake_cf
from tests.upstreams import dashscope as fake_dashscope
from tests.upstreams import fal as fake_fal
from tests.upstreams import google as fake_google
from tests.upstreams import ideogram as fake_ideogram
from tests.upstreams import midjourney as fake_mj
from tests.upstreams import openai as fake_openai
from tests.upstreams import replicate as fake_replicate
from tests.upstreams import stability as fake_stability
from tests.upstreams import together as fake_together
from tests.upstreams import zhipu as fake_zhipu
from tests.upstreams.common import FakeUpstream


@dataclass(frozen=True)
class Case:
    provider: str
    model: str
    make_app: Callable[[str], web.Application]  # (expected key) -> app
    state: Callable[[web.Application], FakeUpstream]
    env: Callable[[str, str], dict[str, str]]  # (fake base URL, key) -> gateway env
    key: str
    size: str = "1024x768"  # what the client asks for
    expect: tuple[int, int] = (1024, 768)  # what the images must measure
    edit_model: str | None = None  # a model that edits, when the provider can
    edit_expect: tuple[int, int] | None = None  # None: the input image's size
    extra: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # tells apart two cases of one provider

    @property
    def id(self) -> str:
        return f"{self.provider}-{self.label}" if self.label else self.provider


def _standard_env(provider: str, path: str = "") -> Callable[[str, str], dict[str, str]]:
    prefix = provider.upper().replace("-", "_")

    def env(base: str, key: str) -> dict[str, str]:
        return {f"{prefix}_BASE_URL": base + path, f"{prefix}_API_KEYS": key}

    return env


def _cloudflare_env(base: str, key: str) -> dict[str, str]:
    return {**_standard_env("cloudflare", "/client/v4")(base, key), "CLOUDFLARE_ACCOUNT_ID": "acc0"}


CASES: list[Case] = [
    Case(
        provider="together",
        model="black-forest-labs/FLUX.1-schnell",
        make_app=lambda key: fake_together.create_app(expected_key=key),
        state=fake_together.state,
        env=_standard_env("together", "/v1"),
        key="tgp_v1_" + "k" * 40,
        edit_model="black-forest-labs/FLUX.1-kontext-pro",
    ),
    Case(
        provider="azure-openai",
        model="dall-e-3",
        make_app=lambda key: fake_azure.create_app(expected_key=key),
        state=fake_azure.state,
        env=_standard_env("azure-openai", "/openai"),
        key="0123456789abcdef0123456789abcdef",
        size="1792x1024",
        expect=(1792, 1024),
        edit_model="gpt-image-1",
        edit_expect=(1024, 1024),
    ),
    Case(
        provider="openai-compatible",
        model="dall-e-3",
        make_app=lambda key: fake_openai.create_app(expected_key=key),
        state=fake_openai.state,
        env=_standard_env("openai-compatible", "/v1"),
        key="sk-reseller-0001",
        size="1792x1024",
        expect=(1792, 1024),
        edit_model="gpt-image-1",
        edit_expect=(1024, 1024),
    ),
    Case(
        provider="chat-images",
        model="gemini-2.5-flash-image",
        make_app=lambda key: fake_chat.create_app(expected_key=key),
        state=fake_chat.state,
        env=_standard_env("chat-images", "/v1"),
        key="sk-reseller-0002",
        size="1024x1024",
        expect=(1024, 1024),
        edit_model="gemini-2.5-flash-image",
    ),
    Case(
        provider="chat-images",
        label="markdown",  # images as ![image](url) inside content, read by markdown_images()
        model="gemini-2.5-flash-image",
        make_app=lambda key: fake_chat.create_app(expected_key=key, answer="markdown"),
        state=fake_chat.state,
        env=_standard_env("chat-images", "/v1"),
        key="sk-reseller-0003",
        size="1024x1024",
        expect=(1024, 1024),
    ),
    Case(
        provider="openrouter",
        model="google/gemini-2.5-flash-image",
        make_app=lambda key: fake_chat.create_app(expected_key=key, require_modalities=True),
        state=fake_chat.state,
        env=_standard_env("openrouter", "/v1"),
        key="sk-or-v1-" + "0" * 64,
        size="1792x1024",
        expect=(1344, 768),
        edit_model="google/gemini-2.5-flash-image",
        edit_expect=(1024, 1024),
    ),
    Case(
        provider="cloudflare",
        label="flux-json",
        model="black-forest-labs/flux-1-schnell",
        make_app=lambda key: fake_cf.create_app(expected_key=key, account="acc0"),
        state=fake_cf.state,
        env=_cloudflare_env,
        key="cf-token-" + "x" * 31,
        size="1024x1024",
        expect=(1024, 1024),
    ),
    Case(
        provider="cloudflare",
        label="sdxl-bytes",
        model="stabilityai/stable-diffusion-xl-base-1.0",
        make_app=lambda key: fake_cf.create_app(expected_key=key, account="acc0"),
        state=fake_cf.state,
        env=_cloudflare_env,
        key="cf-token-" + "x" * 31,
        edit_model="runwayml/stable-diffusion-v1-5-img2img",
        edit_expect=(1024, 1024),
    ),
    Case(
        provider="stability",
        model="sd3.5-large",
        make_app=lambda key: fake_stability.create_app(expected_key=key),
        state=fake_stability.state,
        env=_standard_env("stability"),
        key="sk-" + "S" * 48,
        size="1792x1024",
        expect=(1344, 768),
        edit_model="sd3.5-large",
    ),
    Case(
        provider="fal",
        model="fal-ai/flux/dev",
        make_app=lambda key: fake_fal.create_app(expected_key=key, pending_polls=2),
        state=fake_fal.state,
        env=_standard_env("fal"),
        key="0b5f6a1e-1111-2222-3333-444455556666:" + "ab" * 16,
        edit_model="fal-ai/flux/dev/image-to-image",
    ),
    Case(
        provider="bfl",
        model="flux-pro-1.1",
        make_app=lambda key: fake_bfl.create_app(expected_key=key, pending_polls=2),
        state=fake_bfl.state,
        env=_standard_env("bfl"),
        key="7f1c0000-aaaa-bbbb-cccc-000000000001",
        edit_model="flux-kontext-pro",
        edit_expect=(1024, 1024),
    ),
    Case(
        provider="gemini",
        model="gemini-2.5-flash-image",
        make_app=lambda key: fake_google.create_app(expected_key=key),
        state=fake_google.state,
        env=_standard_env("gemini", "/v1beta"),
        key="AIza" + "G" * 35,
        size="1792x1024",
        expect=(1344, 768),
        edit_model="gemini-2.5-flash-image",
        edit_expect=(1024, 1024),
    ),
    Case(
        provider="imagen",
        model="imagen-4.0-generate-001",
        make_app=lambda key: fake_google.create_app(expected_key=key),
        state=fake_google.state,
        env=_standard_env("imagen", "/v1beta"),
        key="AIza" + "I" * 35,
        size="1792x1024",
        expect=(1408, 768),
    ),
    Case(
        provider="replicate",
        model="black-forest-labs/flux-schnell",
        make_app=lambda key: fake_replicate.create_app(expected_key=key),
        state=fake_replicate.state,
        env=_standard_env("replicate", "/v1"),
        key="r8_" + "R" * 37,
        size="1792x1024",
        expect=(1344, 768),
        edit_model="black-forest-labs/flux-dev",
    ),
    Case(
        provider="midjourney",
        model="midjourney",
        make_app=lambda key: fake_mj.create_app(expected_key=key),
        state=fake_mj.state,
        env=_standard_env("midjourney", "/mj"),
        key="mj-secret-0001",
        size="1792x1024",
        expect=(1456, 816),
        edit_model="midjourney",
        edit_expect=(1024, 1024),
    ),
    Case(
        provider="dashscope",
        model="wan2.2-t2i-flash",
        make_app=lambda key: fake_dashscope.create_app(expected_key=key, pending_polls=1),
        state=fake_dashscope.state,
        env=_standard_env("dashscope", "/api/v1"),
        key="sk-" + "d" * 32,
    ),
    Case(
        provider="zhipu",
        model="cogview-4",
        make_app=lambda key: fake_zhipu.create_app(expected_key=key),
        state=fake_zhipu.state,
        env=_standard_env("zhipu", "/api/paas/v4"),
        key="0123456789abcdef0123456789abcdef.zhipuSecret0001",
        size="1792x1024",
        expect=(1792, 1024),  # within 2^21 pixels: as asked
    ),
    Case(
        provider="ideogram",
        model="ideogram-v3-turbo",
        make_app=lambda key: fake_ideogram.create_app(expected_key=key),
        state=fake_ideogram.state,
        env=_standard_env("ideogram"),
        key="ideogram-" + "i" * 40,
        size="1792x1024",
        expect=(1344, 768),
    ),
]
