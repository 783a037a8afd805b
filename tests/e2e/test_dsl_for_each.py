"""`$for_each` end to end: an edit with two input images becomes one inline part per image
(Gemini's `parts`) and one `image_url` item per image (chat completions), in order."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.e2e.dsl_provider import gateway_sdk, provider_doc
from tests.upstreams.common import jpeg_bytes, png_bytes

SEEN = web.AppKey("seen", list[Any])
RESULT = png_bytes(8, 8, (0, 200, 0))
DETAIL = "{{ 'high' if loop.first else 'low' }}"


async def _generate(request: web.Request) -> web.Response:
    request.app[SEEN].append(await request.json())
    image = base64.b64encode(RESULT).decode()
    part = {"inlineData": {"mimeType": "image/png", "data": image}}
    return web.json_response({"candidates": [{"content": {"parts": [part]}}]})


async def test_one_part_per_input_image(tmp_path: Path) -> None:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/generate", _generate)
    doc = provider_doc(
        [{"name": "gen", "request": {"path": "/generate", "json": {
            "contents": [{"parts": [
                {"text": "{{ prompt }}"},
                {"$for_each": "{{ images }}", "$as": "img", "$item": {
                    "inlineData": {"mimeType": "{{ img.mime }}", "data": "{{ img.b64 }}"}}},
            ]}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "{{ prompt }}"},
                {"$for_each": "{{ images }}", "$item": {
                    "type": "image_url",
                    "image_url": {"url": "{{ item.data_uri }}", "detail": DETAIL}}},
            ]}],
        }}, "images": "candidates[0].content.parts[].inlineData.data", "image_kind": "base64"}],
        task="edit",
    )  # fmt: skip
    first, second = png_bytes(16, 16, (255, 0, 0)), jpeg_bytes(16, 16, (0, 0, 255))
    async with gateway_sdk(tmp_path, doc, app) as sdk:
        result = await sdk.images.edit(
            model="m",
            image=[("a.png", first, "image/png"), ("b.jpg", second, "image/jpeg")],
            prompt="merge them",
            response_format="b64_json",
        )
    assert base64.b64decode(result.data[0].b64_json or "") == RESULT
    (body,) = app[SEEN]
    assert body["contents"][0]["parts"] == [
        {"text": "merge them"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(first).decode()}},
        {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(second).decode()}},
    ]
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "image_url"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[2]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert [c["image_url"]["detail"] for c in content[1:]] == ["high", "low"]
