"""The prompt optimizer (routes.yaml `prompt_optimizer:`): a chat model rewrites the prompt.

A fake OpenAI-compatible chat upstream (below) answers per model name: a rewrite, a reasoning
model's `<think>` answer, a slow answer, a 500 that echoes the key, an empty answer. The image
provider is the fake OpenAI Images API, so the prompt the upstream received can be checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from engine.config.loader import build_snapshot
from engine.runtime.calls.optimizer import clean
from tests.e2e.providers import config_dir
from tests.gateway import Gateway, run_gateway
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream

OPENAI_KEY = "sk-proj-" + "O" * 40
LLM_KEY = "llm-key-0123456789abcdef"
REWRITE = "A vivid watercolor of a red fox curled up in fresh snow, soft morning light"

CHAT_PROVIDER = """\
# yaml-language-server: $schema=../../schemas/provider.schema.json
id: llm
kind: chat
title: A chat model for the prompt optimizer
base_url: ${LLM_BASE_URL}
auth:
  header: Authorization
  value: "Bearer {{ key }}"
  keys: ${LLM_API_KEYS:-}
"""

CALLS = web.AppKey("calls", list[dict[str, Any]])
CLOSING = web.AppKey("closing", asyncio.Event)


async def _closing(app: web.Application) -> None:
    app[CLOSING].set()


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[CALLS].append({"body": body, "auth": request.headers.get("Authorization")})
    model = body["model"]
    if model == "slow":  # far past the route's 200 ms; ends early when the server shuts down
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(request.app[CLOSING].wait(), 5)
    if model == "broken":
        return web.json_response(
            {"error": {"message": f"engine exploded for key {LLM_KEY}", "type": "server_error"}},
            status=500,
        )
    content: Any = {
        "rewrite": REWRITE,
        "slow": REWRITE,
        "think": f"<think>The user wants a fox. Add light.</think>\n\n{REWRITE}",
        "quoted": f'"{REWRITE}"',
        "parts": [{"type": "text", "text": REWRITE}],
        "empty": "  ",
    }[model]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if model == "think":
        message["reasoning_content"] = "private reasoning that must not leak"
    return web.json_response(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
    )


def _route(model: str, target: str = "gpt-image-1", **optimizer: Any) -> dict[str, Any]:
    return {
        "targets": [{"provider": "openai", "model": target}],
        "prompt_optimizer": {"provider": "llm", "model": model, **optimizer},
    }


@dataclass
class Setup:
    gateway: Gateway
    client: openai.AsyncOpenAI
    images: Any  # the fake OpenAI Images API state
    chat_calls: list[dict[str, Any]]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    chat = web.Application()
    chat[CALLS] = []
    chat[CLOSING] = asyncio.Event()
    chat.on_shutdown.append(_closing)
    chat.router.add_post("/v1/chat/completions", _chat)
    images = fake_openai.create_app(expected_key=OPENAI_KEY)
    routes = {
        "routes": {
            "opt": _route("rewrite", system="Make it vivid."),
            "think": _route("think", reasoning=True),
            "quoted": _route("quoted"),
            "parts": _route("parts"),
            "slow": _route("slow", timeout="200ms"),
            "broken": _route("broken"),
            "empty": _route("empty"),
            "dalle": _route("rewrite", target="dall-e-3"),
            "failover": {
                "targets": [
                    {"provider": "openai", "model": "gpt-image-1", "priority": 2},
                    {"provider": "openai", "model": "gpt-image-1-mini", "priority": 1},
                ],
                "prompt_optimizer": {"provider": "llm", "model": "rewrite"},
            },
            "plain": {"targets": [{"provider": "openai", "model": "gpt-image-1"}]},
        }
    }
    root = config_dir(tmp_path, ["openai"], routes)
    (root / "providers.d" / "llm.yaml").write_text(CHAT_PROVIDER, encoding="utf-8")
    async with serve_upstream(chat) as chat_base, serve_upstream(images) as images_base:
        env = {
            "OPENAI_BASE_URL": f"{images_base}/v1",
            "OPENAI_API_KEYS": OPENAI_KEY,
            "LLM_BASE_URL": f"{chat_base}/v1",
            "LLM_API_KEYS": LLM_KEY,
        }
        async with run_gateway(root, tmp_path / "files", env) as gw:
            async with openai.AsyncOpenAI(
                base_url=gw.v1, api_key="x", max_retries=0, timeout=30
            ) as client:
                yield Setup(gw, client, fake_openai.state(images), chat[CALLS])


async def test_the_rewrite_goes_upstream_and_back_as_revised_prompt(setup: Setup) -> None:
    result = await setup.client.images.generate(
        model="opt", prompt="a fox", response_format="b64_json"
    )
    assert result.data[0].revised_prompt == REWRITE
    assert setup.images.last.json["prompt"] == REWRITE
    [call] = setup.chat_calls
    assert call["auth"] == f"Bearer {LLM_KEY}"
    assert call["body"]["model"] == "rewrite"
    assert call["body"]["messages"] == [
        {"role": "system", "content": "Make it vivid."},
        {"role": "user", "content": "a fox"},
    ]


@pytest.mark.parametrize("route", ["think", "quoted", "parts"])
async def test_answers_are_trimmed_to_the_prompt(setup: Setup, route: str) -> None:
    result = await setup.client.images.generate(model=route, prompt="a fox")
    assert result.data[0].revised_prompt == REWRITE  # no <think>, no reasoning_content, no quotes
    assert setup.images.last.json["prompt"] == REWRITE
    if route == "think":
        system = setup.chat_calls[0]["body"]["messages"][0]
        assert system["role"] == "system" and "image" in system["content"]  # the default


@pytest.mark.parametrize("route", ["slow", "broken", "empty"])
async def test_a_failed_rewrite_keeps_the_original_prompt(
    setup: Setup, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pixgate.service")
    started = asyncio.get_running_loop().time()
    result = await setup.client.images.generate(model=route, prompt="a fox")
    assert result.data[0].revised_prompt is None
    assert setup.images.last.json["prompt"] == "a fox"
    assert len(setup.chat_calls) == 1
    if route == "slow":
        assert asyncio.get_running_loop().time() - started < 3  # the timeout, not the answer
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "prompt optimizer failed" in logged and f"route={route}" in logged
    assert LLM_KEY not in logged
    if route == "broken":
        assert "HTTP 500" in logged and "engine exploded" in logged


async def test_an_upstream_revision_of_the_rewrite_wins(setup: Setup) -> None:
    """dall-e-3 revises prompts itself: what it reports is what it drew."""
    result = await setup.client.images.generate(model="dalle", prompt="a fox")
    assert setup.images.last.json["prompt"] == REWRITE
    assert result.data[0].revised_prompt == fake_openai.revise_prompt(REWRITE)


async def test_once_per_request_even_across_failover(setup: Setup) -> None:
    setup.images.fail_next("server_error")
    raw = await setup.client.images.with_raw_response.generate(model="failover", prompt="a fox")
    assert raw.headers["x-pixgate-attempts"] == "2"
    assert len(setup.chat_calls) == 1
    calls = setup.images.calls("generations")
    assert [c.json["prompt"] for c in calls] == [REWRITE, REWRITE]


async def test_routes_without_an_optimizer_do_not_call_it(setup: Setup) -> None:
    result = await setup.client.images.generate(model="plain", prompt="a fox")
    assert result.data[0].revised_prompt is None
    assert setup.images.last.json["prompt"] == "a fox"
    assert setup.chat_calls == []


async def test_the_chat_provider_is_not_an_image_model(setup: Setup) -> None:
    models = {m.id for m in (await setup.client.models.list()).data}
    assert "opt" in models and not any(m.startswith("llm") for m in models)


async def test_streaming_requests_are_optimized_too(setup: Setup) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{setup.gateway.v1}/images/generations",
            json={"model": "opt", "prompt": "a fox", "stream": True},
        ) as resp,
    ):
        text = await resp.text()
    assert resp.status == 200 and "event: image_generation.completed" in text
    assert setup.images.last.json["prompt"] == REWRITE
    assert setup.images.last.json["stream"] is True


# ---------------------------------------------------------------------------------------------
# Units: answer trimming, and what lint says about chat providers


@pytest.mark.parametrize(
    ("answer", "reasoning", "expected"),
    [
        ("  a fox \n", False, "a fox"),
        ('"a fox"', False, "a fox"),
        ("“a fox”", False, "a fox"),
        ('"a" fox "b"', False, '"a" fox "b"'),
        ("<think>hmm</think>a fox", False, "<think>hmm</think>a fox"),
        ("<think>hmm\nmore</think>\n\na fox", True, "a fox"),
        ("stray reasoning</think> a fox", True, "a fox"),
        ("<think>only thinking</think>", True, ""),
    ],
)
def test_clean(answer: str, reasoning: bool, expected: str) -> None:
    assert clean(answer, reasoning=reasoning) == expected


def test_chat_providers_have_no_models_or_tasks(tmp_path: Path) -> None:
    root = config_dir(tmp_path, ["openai"], {"routes": {"plain": _route("x")}})
    (root / "providers.d" / "llm.yaml").write_text(CHAT_PROVIDER, encoding="utf-8")
    ok = build_snapshot(root, {"LLM_BASE_URL": "http://127.0.0.1:9/v1", "LLM_API_KEYS": "k"})
    assert ok.ok, [d.format() for d in ok.diagnostics.sorted()]
    assert ok.snapshot is not None and ok.snapshot.providers["llm"].kind == "chat"
    (root / "providers.d" / "llm.yaml").write_text(
        CHAT_PROVIDER + "models: {gpt-4o-mini: {}}\n", encoding="utf-8"
    )
    bad = build_snapshot(root, {"LLM_BASE_URL": "http://127.0.0.1:9/v1"})
    lines = [d.format() for d in bad.diagnostics.sorted()]
    assert any("E101 models: a `kind: chat` provider has no models" in line for line in lines)
    (root / "providers.d" / "llm.yaml").write_text(
        CHAT_PROVIDER.replace("kind: chat\n", ""), encoding="utf-8"
    )
    image = build_snapshot(root, {"LLM_BASE_URL": "http://127.0.0.1:9/v1"})
    lines = [d.format() for d in image.diagnostics.sorted()]
    assert any("'models' is a required property" in line for line in lines)
