"""POST /v1/responses: the Responses API's image_generation tool, answered and streamed.

Driven by the official SDK (its Response model and stream parser are the contract) and by a raw
HTTP client whose every answer and event is validated against OpenAI's published schemas.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

import engine.api.responses_stream as responses_stream
from tests.clients.exchanges import RESPONSE_EVENTS
from tests.e2e.providers import config_dir, single
from tests.e2e.test_image_stream import post_raw
from tests.gateway import Gateway, run_gateway
from tests.openapi import validate_component
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream
from tests.upstreams.common import png_bytes

OPENAI_KEY = "sk-proj-" + "R" * 40
TOOL = {"type": "image_generation", "size": "256x256"}
PREAMBLE = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.image_generation_call.in_progress",
    "response.image_generation_call.generating",
]


def sdk(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30)


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def data_uri(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(width, height)).decode()


def check_events(spec: dict[str, Any], events: list[tuple[str | None, Any]]) -> None:
    """Event lines name the data's type, each fits its schema, sequence numbers count up."""
    for number, (name, data) in enumerate(events):
        assert name == data["type"], (name, data)
        validate_component(spec, RESPONSE_EVENTS[data["type"]], data)
        validate_component(spec, "ResponseStreamEvent", data)
        assert data["sequence_number"] == number


@pytest.fixture
def fast_keepalive(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(responses_stream, "KEEPALIVE_SECONDS", 0.05)
    return 0.05


@pytest.fixture
async def openai_gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Any]]:
    """Route `m` is gpt-image-1 on the fake OpenAI API, which streams previews."""
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        cfg = config_dir(tmp_path, ["openai"], single("openai", "gpt-image-1"))
        async with run_gateway(cfg, tmp_path / "f", env) as gw:
            yield gw, fake_openai.state(app)


# ---------------------------------------------------------------------------------------------
# The JSON answer


async def test_sdk_generates_an_image_call(
    demo_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    async with sdk(demo_gateway) as client:
        raw = await client.responses.with_raw_response.create(
            model="demo", input="a red fox in snow", tools=[TOOL]
        )
        response = raw.parse()
    body = raw.http_response.json()
    validate_component(openai_spec, "Response", body)
    assert response.status == "completed" and response.model == "demo"
    assert body["id"].startswith("resp_") and body["object"] == "response"
    [item] = response.output
    assert item.type == "image_generation_call" and item.status == "completed"
    assert item.result is not None and decode(item.result).size == (256, 256)
    assert body["output"][0]["size"] == "256x256" and body["output"][0]["output_format"] == "png"
    assert body["tools"] == [TOOL]
    assert body["usage"]["total_tokens"] == 0  # the demo reports no usage
    assert raw.http_response.headers["x-pixgate-route"] == "demo"


async def test_input_image_means_an_edit(
    openai_gateway: tuple[Gateway, Any], openai_spec: dict[str, Any]
) -> None:
    gw, fake = openai_gateway
    message = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "put a hat on it"},
            {"type": "input_image", "image_url": data_uri(1024, 1024)},
        ],
    }
    older = {"role": "user", "content": "an earlier request, not this one"}
    raw = await post_raw(
        f"{gw.v1}/responses",
        {"model": "m", "input": [older, {"role": "assistant", "content": "ok"}, message],
         "tools": [{"type": "image_generation", "quality": "low", "output_format": "webp"}]},
    )  # fmt: skip
    assert raw.status == 200, raw.text
    body = json.loads(raw.text)
    validate_component(openai_spec, "Response", body)
    assert fake.last.path.endswith("/images/edits")
    form = fake.last.form()
    assert form["prompt"] == ["put a hat on it"] and form["quality"] == ["low"]
    item = body["output"][0]
    assert decode(item["result"]).format == "WEBP" and item["output_format"] == "webp"
    assert item["revised_prompt"] == "put a hat on it"  # gpt-image-1 does not revise it
    assert body["usage"]["total_tokens"] > 0  # the upstream's image usage is passed on


async def test_model_comes_from_the_tool_or_the_request(
    demo_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    url = f"{demo_gateway.v1}/responses"
    # The AI SDK's openai.responses('gpt-4.1') with the image tool: a chat model this gateway
    # does not have, so the default route makes the image; the echo keeps the client's name.
    raw = await post_raw(url, {"model": "gpt-4.1", "input": "a fox", "tools": [TOOL]})
    assert raw.status == 200 and json.loads(raw.text)["model"] == "gpt-4.1"
    # The tool names the image model.
    tool = {**TOOL, "model": "demo-async"}
    raw = await post_raw(url, {"model": "gpt-4.1", "input": "a fox", "tools": [tool]})
    assert raw.status == 200
    validate_component(openai_spec, "Response", json.loads(raw.text))
    # No tool, but the model is one of the gateway's image models: that is a way to an image.
    raw = await post_raw(url, {"model": "demo", "input": "a fox"})
    assert raw.status == 200 and json.loads(raw.text)["tools"] == []


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


TEXT = {"type": "input_text", "text": "x"}
BAD_REQUESTS: list[tuple[dict[str, Any], int, str]] = [
    ({}, 400, "input"),
    ({"input": []}, 400, "input"),
    ({"input": [{"role": "system", "content": "x"}]}, 400, "input"),
    ({"input": user({"type": "input_image", "file_id": "f"})}, 400, "input[0].content[0].file_id"),
    ({"input": user({"type": "input_file", "file_id": "f"})}, 400, "input[0].content[0].type"),
    (
        {"input": user(TEXT, {"type": "input_image", "image_url": "data:image/png;base64,bm90"})},
        400,
        "input[0].content[1].image_url",
    ),
    ({"input": "x", "previous_response_id": "resp_1"}, 400, "previous_response_id"),
    ({"input": "x", "background": True}, 400, "background"),
    ({"input": "x", "tools": [{**TOOL, "partial_images": 4}]}, 400, "tools.partial_images"),
    ({"input": "x", "tools": [{**TOOL, "size": "huge"}]}, 400, "size"),
    ({"input": "x", "tools": [{**TOOL, "model": "nope"}]}, 404, "tools.model"),
    ({"input": "x", "stream": "yes"}, 400, "stream"),
]


async def test_bad_and_text_only_requests_are_openai_errors(
    demo_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    for body, status, param in BAD_REQUESTS:
        raw = await post_raw(f"{demo_gateway.v1}/responses", {"model": "demo", **body})
        assert raw.status == status, (body, raw.text)
        error = json.loads(raw.text)
        validate_component(openai_spec, "ErrorResponse", error)
        assert error["error"]["param"] == param, body
    url = f"{demo_gateway.v1}/responses"
    for body in (
        {"model": "gpt-4.1", "input": "tell me a joke"},
        {"model": "gpt-4.1", "input": "x", "tools": [{"type": "function", "name": "f"}]},
        {"model": "gpt-4.1", "input": "x", "tools": [TOOL], "tool_choice": "none"},
        {"input": "no model, no tool"},
    ):
        raw = await post_raw(url, body)
        assert raw.status == 400, body
        error = json.loads(raw.text)
        validate_component(openai_spec, "ErrorResponse", error)
        assert "This gateway makes images" in error["error"]["message"]
        assert error["error"]["code"] == "image_generation_tool_required"
    async with sdk(demo_gateway) as client:
        with pytest.raises(openai.BadRequestError, match="makes images"):
            await client.responses.create(model="gpt-4.1", input="tell me a joke")
    # input_image URLs go through the SSRF-guarded fetch like every client image.
    content = [
        {"type": "input_text", "text": "edit this"},
        {"type": "input_image", "image_url": "http://169.254.169.254/latest/meta-data/x.png"},
    ]
    raw = await post_raw(
        f"{demo_gateway.v1}/responses",
        {"model": "demo", "input": [{"role": "user", "content": content}], "tools": [TOOL]},
    )
    assert raw.status == 400
    assert json.loads(raw.text)["error"]["param"] == "input[0].content[1].image_url"


# ---------------------------------------------------------------------------------------------
# The event stream


async def test_stream_with_partial_images(
    openai_gateway: tuple[Gateway, Any], openai_spec: dict[str, Any]
) -> None:
    gw, fake = openai_gateway
    tool = {"type": "image_generation", "partial_images": 2, "size": "1536x1024"}
    async with sdk(gw) as client:
        stream = await client.responses.create(
            model="m", input="a fox in snow", tools=[tool], stream=True
        )
        events = [event async for event in stream]
    partial = "response.image_generation_call.partial_image"
    assert [e.type for e in events] == [
        *PREAMBLE,
        partial,
        partial,
        "response.image_generation_call.completed",
        "response.output_item.done",
        "response.completed",
    ]
    assert fake.last.json["partial_images"] == 2 and fake.last.json["stream"] is True
    done = events[-1]
    assert done.type == "response.completed"
    [item] = done.response.output
    assert item.type == "image_generation_call" and item.result is not None
    assert decode(item.result).size == (1536, 1024)

    raw = await post_raw(
        f"{gw.v1}/responses",
        {"model": "m", "input": "a fox", "tools": [tool], "stream": True},
    )
    assert raw.status == 200 and raw.content_type.startswith("text/event-stream")
    check_events(openai_spec, raw.events)
    ids = {data.get("item_id") or data.get("item", {}).get("id") for _, data in raw.events[2:-1]}
    assert len(ids) == 1  # every item event names the one image call
    previews = [data for _, data in raw.events if data["type"] == partial]
    assert [p["partial_image_index"] for p in previews] == [0, 1]
    assert decode(previews[0]["partial_image_b64"]).size == (1536, 1024)
    final = raw.events[-1][1]["response"]
    assert final["status"] == "completed" and final["usage"]["total_tokens"] > 0
    assert raw.events[0][1]["response"]["status"] == "in_progress"
    assert "[DONE]" not in raw.text


async def test_stream_from_a_provider_that_does_not_stream(
    demo_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    raw = await post_raw(
        f"{demo_gateway.v1}/responses",
        {"model": "demo", "input": "a fox", "tools": [{**TOOL, "partial_images": 2}],
         "stream": True},
    )  # fmt: skip
    assert [name for name, _ in raw.events] == [
        *PREAMBLE,
        "response.image_generation_call.completed",
        "response.output_item.done",
        "response.completed",
    ]
    check_events(openai_spec, raw.events)


async def test_stream_failure_before_start_is_an_ordinary_error(
    openai_gateway: tuple[Gateway, Any],
) -> None:
    gw, fake = openai_gateway
    fake.fail_next("content_policy")
    raw = await post_raw(
        f"{gw.v1}/responses", {"model": "m", "input": "x", "tools": [TOOL], "stream": True}
    )
    assert raw.status == 400 and raw.content_type.startswith("application/json")
    assert json.loads(raw.text)["error"]["code"] == "content_policy_violation"


async def test_stream_failure_after_start_is_error_then_failed(
    demo_gateway: Gateway, openai_spec: dict[str, Any], fast_keepalive: float
) -> None:
    slow = {**TOOL, "delay": 0.4}  # a field OpenAI's tool does not have goes to the provider
    body = {"model": "demo-async", "input": "[demo:fail] nope", "tools": [slow], "stream": True}
    raw = await post_raw(f"{demo_gateway.v1}/responses", body)
    assert raw.status == 200
    names = [name for name, _ in raw.events]
    assert names[: len(PREAMBLE)] == PREAMBLE and names[-2:] == ["error", "response.failed"]
    check_events(openai_spec, raw.events)
    assert "demo task failed" in raw.events[-2][1]["message"]
    assert raw.events[-1][1]["response"]["error"]["code"] == "server_error"
    async with sdk(demo_gateway) as client:
        stream = await client.responses.create(
            model="demo-async",
            input="[demo:fail] nope",
            tools=[slow],  # type: ignore[list-item]
            stream=True,
        )
        events = [event async for event in stream]
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1].type == "response.failed" and events[-1].response.status == "failed"


async def test_several_images_are_several_calls(
    openai_gateway: tuple[Gateway, Any], openai_spec: dict[str, Any]
) -> None:
    """`n` in the tool (a pixgate extension) asks for several images, one call item each; the
    mask in `input_image_mask` goes with the edit."""
    gw, fake = openai_gateway
    mask = io.BytesIO()
    Image.new("RGBA", (1024, 1024)).save(mask, "PNG")  # OpenAI wants an alpha channel
    mask_uri = "data:image/png;base64," + base64.b64encode(mask.getvalue()).decode()
    tool = {"type": "image_generation", "n": 2, "partial_images": 1,
            "input_image_mask": {"image_url": mask_uri}}  # fmt: skip
    content = [
        {"type": "input_text", "text": "two hats"},
        {"type": "input_image", "image_url": data_uri(1024, 1024)},
    ]
    body = {"model": "m", "input": [{"role": "user", "content": content}], "tools": [tool]}
    raw = await post_raw(f"{gw.v1}/responses", {**body, "stream": True})
    assert raw.status == 200, raw.text
    check_events(openai_spec, raw.events)
    assert fake.last.form()["n"] == ["2"]
    assert "mask" in [part.name for part in fake.last.parts]
    done = [data for _, data in raw.events if data["type"] == "response.output_item.done"]
    assert [d["output_index"] for d in done] == [0, 1]
    assert len({d["item"]["id"] for d in done}) == 2
    final = raw.events[-1][1]["response"]
    assert [item["id"] for item in final["output"]] == [d["item"]["id"] for d in done]
    added = [data for _, data in raw.events if data["type"] == "response.output_item.added"]
    assert [a["output_index"] for a in added] == [0, 1]
