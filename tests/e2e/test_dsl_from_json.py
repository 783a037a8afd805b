"""`from_json` end to end: a presigned upload whose form `fields` arrive as a JSON string.

The fake upstream hands out an upload slot (`fields` is JSON text, as some storage APIs send
it), accepts the multipart upload with those fields, then generates from the uploaded key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.e2e.dsl_provider import gateway_sdk, provider_doc
from tests.upstreams.common import png_bytes

SEEN = web.AppKey("seen", list[Any])
FIELDS = {"key": "uploads/in-1.png", "policy": "cG9saWN5", "x-amz-signature": "c2ln"}


async def _init(request: web.Request) -> web.Response:
    upload = {"url": str(request.url.with_path("/upload")), "fields": json.dumps(FIELDS)}
    return web.json_response({"upload": upload})


async def _upload(request: web.Request) -> web.Response:
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    image = form.get("file")
    size = len(image.file.read()) if isinstance(image, web.FileField) else 0
    request.app[SEEN].append({"fields": fields, "file_bytes": size})
    return web.Response(status=204)


async def _generate(request: web.Request) -> web.Response:
    request.app[SEEN].append(await request.json())
    return web.json_response({"images": [{"url": "https://img.test/out.png"}]})


async def test_presigned_upload_fields_from_a_json_string(tmp_path: Path) -> None:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/init", _init)
    app.router.add_post("/upload", _upload)
    app.router.add_post("/generate", _generate)
    policy = "{{ (steps.init.fields | from_json).policy }}"
    signature = "{{ (steps.init.fields | from_json)['x-amz-signature'] }}"
    doc = provider_doc(
        [
            {"name": "init", "request": {"path": "/init", "json": {}}, "extract": {
                "upload_url": "upload.url", "fields": "upload.fields",
                "key": "from_json(upload.fields).key"}},
            {"name": "upload", "response": "text", "request": {
                "url": "{{ steps.init.upload_url }}",
                "multipart": [
                    {"name": "key", "value": "{{ steps.init.key }}"},
                    {"name": "policy", "value": policy},
                    {"name": "x-amz-signature", "value": signature},
                    {"name": "file", "file": "{{ image }}"},
                ]}},
            {"name": "generate", "request": {"path": "/generate", "json": {
                "prompt": "{{ prompt }}", "image_key": "{{ steps.init.key }}"}},
             "images": "images[].url"},
        ],
        task="edit",
    )  # fmt: skip
    source = png_bytes(16, 16, (9, 9, 9))
    async with gateway_sdk(tmp_path, doc, app) as sdk:
        result = await sdk.images.edit(
            model="m", image=("a.png", source, "image/png"), prompt="recolour"
        )
    assert result.data[0].url == "https://img.test/out.png"
    upload, generate = app[SEEN]
    assert upload == {"fields": FIELDS, "file_bytes": len(source)}
    assert generate == {"prompt": "recolour", "image_key": "uploads/in-1.png"}
