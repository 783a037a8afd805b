"""`inputs:` end to end: the provider wants JPEG, at most 64 px a side, and a black-and-white
mask (white = edit); the client sends OpenAI's PNG and alpha mask through the SDK."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from PIL import Image

from tests.e2e.dsl_provider import gateway_sdk, provider_doc
from tests.gateway import run_gateway
from tests.upstreams import serve_upstream

SEEN = web.AppKey("seen", list[dict[str, Any]])


async def _edit(request: web.Request) -> web.Response:
    form = await request.post()
    files = {}
    for name in ("image", "mask"):
        part = form[name]
        assert isinstance(part, web.FileField)
        files[name] = (part.content_type, part.file.read())
    request.app[SEEN].append(files)
    return web.json_response({"data": [{"url": "https://img.test/edited.png"}]})


def _png(pic: Image.Image) -> bytes:
    buffer = io.BytesIO()
    pic.save(buffer, "PNG")
    return buffer.getvalue()


async def test_images_and_mask_are_converted_for_the_provider(tmp_path: Path) -> None:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/edit", _edit)
    doc = provider_doc(
        [{"name": "edit", "request": {"path": "/edit", "multipart": [
            {"name": "prompt", "value": "{{ prompt }}"},
            {"name": "image", "file": "{{ image }}"},
            {"name": "mask", "file": "{{ mask }}"},
        ]}, "images": "data[].url"}],
        task="edit",
        inputs={"format": "jpeg", "max_side": 64, "max_bytes": "200KB", "mask": "white_edit"},
    )  # fmt: skip
    image = _png(Image.new("RGBA", (256, 128), (200, 30, 30, 255)))
    mask = Image.new("RGBA", (256, 128), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 64, 128))  # OpenAI: transparent = edit the left quarter
    async with gateway_sdk(tmp_path, doc, app) as sdk:
        result = await sdk.images.edit(
            model="m", image=("in.png", image, "image/png"),
            mask=("mask.png", _png(mask), "image/png"), prompt="paint it",
        )  # fmt: skip
    assert result.data[0].url == "https://img.test/edited.png"
    (files,) = app[SEEN]
    sent = Image.open(io.BytesIO(files["image"][1]))
    assert (files["image"][0], sent.format, sent.size) == ("image/jpeg", "JPEG", (64, 32))
    sent_mask = Image.open(io.BytesIO(files["mask"][1]))
    assert (files["mask"][0], sent_mask.mode, sent_mask.size) == ("image/png", "L", (64, 32))
    assert sent_mask.getpixel((4, 16)) == 255 and sent_mask.getpixel((50, 16)) == 0


async def _by_url(request: web.Request) -> web.Response:
    request.app[SEEN].append(await request.json())
    return web.json_response({"data": [{"url": "https://img.test/edited.png"}]})


async def test_a_published_input_gets_a_url_of_its_converted_bytes(tmp_path: Path) -> None:
    """With a public URL, inputs are published (`image.url`); the provider fetches the
    converted image, not the client's original."""
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/edit", _by_url)
    doc = provider_doc(
        [{"name": "edit", "request": {"path": "/edit", "json": {"image": "{{ image.url }}"}},
          "images": "data[].url"}],
        task="edit", inputs={"format": "jpeg", "max_side": 32},
    )  # fmt: skip
    root = tmp_path / "config"
    (root / "providers.d").mkdir(parents=True)
    (root / "providers.d" / "t.yaml").write_text(yaml.safe_dump(doc))
    routes = {"demo": False, "routes": {"m": {"targets": [{"provider": "t", "model": "m"}]}}}
    (root / "routes.yaml").write_text(yaml.safe_dump(routes))
    public = "http://gateway.test"
    image = _png(Image.new("RGB", (128, 64), (10, 200, 10)))
    async with serve_upstream(app) as base:
        env = {"T_BASE_URL": base, "PIXGATE_PUBLIC_URL": public}
        async with run_gateway(root, tmp_path / "files", env) as gw:
            async with aiohttp.ClientSession() as http:
                form = aiohttp.FormData()
                form.add_field("model", "m")
                form.add_field("prompt", "p")
                form.add_field("image", image, filename="a.png", content_type="image/png")
                async with http.post(f"{gw.v1}/images/edits", data=form) as resp:
                    assert resp.status == 200, await resp.text()
                (body,) = app[SEEN]
                assert body["image"].startswith(public + "/files/")
                async with http.get(body["image"].replace(public, gw.url)) as got:
                    data = await got.read()
    pic = Image.open(io.BytesIO(data))
    assert (pic.format, pic.size) == ("JPEG", (32, 16))
