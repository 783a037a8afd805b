"""Request bodies on the wire (issue 13 defects 2 and 3): a text-only `multipart:` body is
multipart/form-data, and a whole-expression leaf with `}}` inside stays an object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from tests.e2e.dsl_provider import gateway_sdk, provider_doc

SEEN = web.AppKey("seen", list[dict[str, Any]])


async def _submit(request: web.Request) -> web.Response:
    form = await request.post() if request.content_type == "multipart/form-data" else None
    request.app[SEEN].append({"content_type": request.content_type, "fields": dict(form or {})})
    return web.json_response({"id": "job-1"})


async def _result(request: web.Request) -> web.Response:
    request.app[SEEN].append({"content_type": request.content_type, "json": await request.json()})
    return web.json_response({"images": ["https://img.test/a.png"]})


async def test_text_only_multipart_and_nested_literal_objects(tmp_path: Path) -> None:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/submit", _submit)
    app.router.add_post("/result", _result)
    doc = provider_doc([
        {"name": "submit", "request": {"path": "/submit", "multipart": [
            {"name": "prompt", "value": "{{ prompt }}"},
            {"name": "output_format", "value": "png"},
        ]}, "extract": {"id": "id"}},
        {"name": "result", "request": {"path": "/result", "json": {
            "input": "{{ {'id': steps.submit.id, 'options': {'size': {'w': size.width}}} }}",
        }}, "images": "images"},
    ])  # fmt: skip
    async with gateway_sdk(tmp_path, doc, app) as sdk:
        result = await sdk.images.generate(model="m", prompt="a fox", size="1024x1024")
    assert result.data[0].url == "https://img.test/a.png"
    submit, second = app[SEEN]
    assert submit == {
        "content_type": "multipart/form-data",
        "fields": {"prompt": "a fox", "output_format": "png"},
    }
    assert second["json"] == {"input": {"id": "job-1", "options": {"size": {"w": 1024}}}}
