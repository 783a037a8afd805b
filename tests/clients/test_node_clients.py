"""Node clients against a real gateway: the official `openai` npm SDK and the Vercel AI SDK.

tests/clients/node/clients.mjs drives them (its package-lock.json pins the versions; the
packages come from the npm registry through `npm ci`, see tests/services/node.py). Each check
reports facts as JSON and every answer the clients received is validated against OpenAI's
published schemas. Without Node or npm these tests fail under CI=true and skip loudly otherwise.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.exchanges import validate_exchange
from tests.e2e.providers import config_dir, single
from tests.gateway import Gateway, run_gateway
from tests.services.node import NodeClients, node_clients, run_script
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream

OPENAI_KEY = "sk-proj-" + "N" * 40
PNG_CHECKS = (
    "openai.images.generate.b64_json",
    "openai.images.generate.url",
    "openai.images.edit",
    "openai.images.generate.stream",
    "openai.responses.create",
    "openai.responses.stream",
    "ai.generateImage.createOpenAI",
    "ai.generateImage.createOpenAICompatible",
    "ai.responses.generateText",
    "ai.responses.streamText",
)
RESPONSE_EVENTS_WITHOUT_PREVIEWS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.image_generation_call.in_progress",
    "response.image_generation_call.generating",
    "response.image_generation_call.completed",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="session")
def node() -> NodeClients:
    return node_clients()


async def run_checks(
    node: NodeClients,
    gw: Gateway,
    tmp_path: Path,
    spec: dict[str, Any],
    checks: tuple[str, ...],
    model: str,
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Run the checks; every one must have passed and every exchange fit the spec. Returns
    the checks' facts, and what the exchanges were validated as."""
    capture = tmp_path / "exchanges.jsonl"
    env = {
        "PIXGATE_BASE_URL": gw.v1,
        "PIXGATE_CHECKS": ",".join(checks),
        "PIXGATE_CAPTURE": str(capture),
        "PIXGATE_MODEL": model,
    }
    results = {r["check"]: r for r in await run_script(node, "clients.mjs", env)}
    failed = {name: r.get("error") for name, r in results.items() if not r["ok"]}
    assert not failed, json.dumps(failed, indent=1)
    assert sorted(results) == sorted(checks)
    exchanges = [json.loads(line) for line in capture.read_text().splitlines() if line]
    return results, {validate_exchange(spec, x) for x in exchanges}


async def test_node_clients_on_the_demo_gateway(
    node: NodeClients, demo_gateway: Gateway, tmp_path: Path, openai_spec: dict[str, Any]
) -> None:
    checks = (
        *PNG_CHECKS,
        "openai.models.list",
        "openai.models.retrieve",
        "openai.chat.completions",
        "openai.errors.not_found",
    )
    results, validated = await run_checks(node, demo_gateway, tmp_path, openai_spec, checks, "demo")
    assert validated == {
        "ImagesResponse",
        "Response",
        "ListModelsResponse",
        "Model",
        "CreateChatCompletionResponse",
        "ErrorResponse",
        "stream /v1/images/generations",
        "stream /v1/responses",
    }
    for name in PNG_CHECKS:
        assert results[name]["png"] is True, name
    assert results["openai.images.generate.url"]["url"].startswith(f"{demo_gateway.url}/files/")
    assert results["openai.images.generate.stream"]["types"] == ["image_generation.completed"]
    assert results["openai.responses.create"]["type"] == "image_generation_call"
    assert results["openai.responses.stream"]["types"] == RESPONSE_EVENTS_WITHOUT_PREVIEWS
    assert "demo" in results["openai.models.list"]["ids"]
    assert results["openai.models.retrieve"] == {
        "check": "openai.models.retrieve", "ok": True, "id": "demo", "object": "model"
    }  # fmt: skip
    assert results["openai.chat.completions"]["content"].startswith("![image](")
    error = results["openai.errors.not_found"]
    assert error["notFound"] is True and error["code"] == "model_not_found"
    assert results["ai.generateImage.createOpenAI"]["mediaType"] == "image/png"
    assert results["ai.generateImage.createOpenAICompatible"]["count"] == 2
    generated = results["ai.responses.generateText"]
    assert generated["parts"] == ["tool-call", "tool-result"]
    assert generated["finishReason"] == "stop"
    assert results["ai.responses.streamText"]["toolResults"] == 1


@pytest.fixture
async def openai_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """Routes `m` and `gpt-image-1` are gpt-image-1 on the fake OpenAI API, which streams
    previews and answers GPT image models with base64 only."""
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        routes = single("openai", "gpt-image-1")
        routes["routes"]["gpt-image-1"] = {
            "targets": [{"provider": "openai", "model": "gpt-image-1"}]
        }  # type: ignore[index]
        cfg = config_dir(tmp_path, ["openai"], routes)
        async with run_gateway(cfg, tmp_path / "f", env) as gw:
            yield gw


async def test_node_clients_on_openai_upstream(
    node: NodeClients, openai_gateway: Gateway, tmp_path: Path, openai_spec: dict[str, Any]
) -> None:
    """Previews in both streams, and a GPT image model named as OpenAI's (the AI SDK sends no
    response_format for it and reads base64 only)."""
    checks = (
        "openai.images.generate.stream",
        "openai.responses.stream",
        "ai.responses.streamText",
        "openai.images.generate.gptImage",
        "ai.generateImage.gptImage",
    )
    results, validated = await run_checks(node, openai_gateway, tmp_path, openai_spec, checks, "m")
    assert validated == {
        "ImagesResponse",
        "stream /v1/images/generations",
        "stream /v1/responses",
    }
    assert results["openai.images.generate.gptImage"]["url"] is None
    assert results["openai.images.generate.stream"]["types"] == [
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    types = results["openai.responses.stream"]["types"]
    assert types.count("response.image_generation_call.partial_image") == 2
    assert types[-1] == "response.completed"
    streamed = results["ai.responses.streamText"]
    assert streamed["toolResults"] == 3  # the AI SDK shows each preview as a tool result
    assert all(results[name]["png"] for name in checks)
