"""Edits, variations and blends: every input form, through the SDK, to real fake upstreams."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from PIL import Image

from engine.runtime.images.fetch import HOST_REFUSED
from tests.e2e.providers import config_dir, single
from tests.gateway import REPO, Gateway, run_gateway
from tests.openapi import validate_component
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream
from tests.upstreams.common import png_bytes

OPENAI_KEY = "sk-proj-" + "E" * 40


def png(width: int, height: int, color: tuple[int, int, int], alpha: bool = False) -> bytes:
    image = Image.new("RGBA" if alpha else "RGB", (width, height), (*color, 0) if alpha else color)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def red_share(image: Image.Image) -> float:
    pixels = list(image.resize((64, 64)).get_flattened_data())
    return sum(1 for r, g, b in pixels if r > 200 and g < 60 and b < 60) / len(pixels)


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[Gateway, openai.AsyncOpenAI]]:
    env = {"PIXGATE_FETCH_ALLOW_LOOPBACK": "1"}
    async with run_gateway(REPO, tmp_path / "files", env) as gw:
        async with openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk:
            yield gw, sdk


async def test_sdk_edit_sends_every_image_and_the_mask(
    tmp_path: Path, openai_spec: dict[str, Any]
) -> None:
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        cfg = config_dir(tmp_path, ["openai"], single("openai", "gpt-image-1"))
        async with run_gateway(cfg, tmp_path / "f", env) as gw:
            async with openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk:
                raw = await sdk.images.with_raw_response.edit(
                    model="m",
                    prompt="put them in a basket",
                    image=[
                        ("a.png", png(512, 512, (255, 0, 0)), "image/png"),
                        ("b.png", png(512, 512, (0, 0, 255)), "image/png"),
                    ],
                    mask=("mask.png", png(512, 512, (0, 0, 0), alpha=True), "image/png"),
                    size="1024x1024",
                    input_fidelity="high",
                )
        validate_component(openai_spec, "ImagesResponse", raw.http_response.json())
        sent = fake_openai.state(app).last
        assert sent.path == "/v1/images/edits"
        files = sent.files()
        assert [p.name for p in files] == ["image[]", "image[]", "mask"]
        assert [p.image()[1:3] for p in files] == [(512, 512)] * 3
        assert sent.field("prompt") == "put them in a basket"
        assert sent.field("input_fidelity") == "high"
        assert fake_openai.state(app).rejections == []


async def test_demo_edit_draws_the_input(demo: Any) -> None:
    _gw, sdk = demo
    result = await sdk.images.edit(
        model="demo",
        prompt="frame it",
        image=("red.png", png(256, 256, (255, 0, 0)), "image/png"),
        size="256x256",
        response_format="b64_json",
    )
    image = decode(result.data[0].b64_json or "")
    assert image.size == (256, 256)
    assert red_share(image) > 0.02  # the red input is visible in the output


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK's own notice
async def test_variation_and_blend(demo: Any) -> None:
    gw, sdk = demo
    var = await sdk.images.create_variation(
        model="demo",
        image=("red.png", png(128, 128, (255, 0, 0)), "image/png"),
        response_format="b64_json",
        size="256x256",
    )
    assert red_share(decode(var.data[0].b64_json or "")) > 0.02
    red = base64.b64encode(png(64, 64, (255, 0, 0))).decode()
    blue = "data:image/png;base64," + base64.b64encode(png(64, 64, (0, 0, 255))).decode()
    async with aiohttp.ClientSession() as http:
        body = {
            "model": "demo",
            "prompt": "mix",
            "images": [{"image_url": blue}, red],
            "size": "256x256",
            "response_format": "b64_json",
        }
        async with http.post(f"{gw.v1}/images/blend", json=body) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["x-pixgate-provider"] == "demo"
            image = decode((await resp.json())["data"][0]["b64_json"])
        assert red_share(image) > 0.01
        body["images"] = [red]
        async with http.post(f"{gw.v1}/images/blend", json=body) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "images"


async def test_json_edit_with_urls_and_the_gateways_own_files(demo: Any) -> None:
    gw = demo[0]
    served = web.Application()
    hits: list[str] = []

    async def picture(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=png(64, 64, (255, 0, 0)), content_type="image/png")

    served.router.add_get("/red.png", picture)
    async with serve_upstream(served) as base, aiohttp.ClientSession() as http:
        body = {
            "model": "demo",
            "prompt": "again",
            "images": [{"image_url": f"{base}/red.png"}],
            "size": "128x128",
            "response_format": "url",
        }
        async with http.post(f"{gw.v1}/images/edits", json=body) as resp:
            assert resp.status == 200, await resp.text()
            own_url = (await resp.json())["data"][0]["url"]
        assert hits == ["/red.png"]
        # An earlier result, by its gateway URL: read from storage, no request to anyone.
        body["images"] = [{"image_url": own_url}]
        body["response_format"] = "b64_json"
        async with http.post(f"{gw.v1}/images/edits", json=body) as resp:
            assert resp.status == 200, await resp.text()
        assert hits == ["/red.png"]


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        ("http://10.0.0.5/x.png", HOST_REFUSED),
        ("http://169.254.169.254/latest/meta-data", HOST_REFUSED),
        ("http://[::ffff:127.0.0.1]/x.png", HOST_REFUSED),
        ("file:///etc/passwd", "http and https"),
        ("data:image/png;base64,not-base64!!", "base64"),
        (base64.b64encode(b"<html>not an image</html>").decode(), "not an image"),
    ],
)
async def test_refused_inputs_are_400s(tmp_path: Path, image: str, needle: str) -> None:
    async with run_gateway(REPO, tmp_path / "files") as gw, aiohttp.ClientSession() as http:
        body = {"model": "demo", "prompt": "x", "images": [{"image_url": image}]}
        async with http.post(f"{gw.v1}/images/edits", json=body) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
        assert needle in error["message"] and error["param"] == "images[0]"


async def test_loopback_urls_are_refused_by_default(tmp_path: Path) -> None:
    served = web.Application()
    served.router.add_get("/x.png", _tiny_png)
    async with serve_upstream(served) as base, run_gateway(REPO, tmp_path / "f") as gw:
        async with aiohttp.ClientSession() as http:
            body = {"model": "demo", "prompt": "x", "image": f"{base}/x.png"}
            async with http.post(f"{gw.v1}/images/edits", json=body) as resp:
                assert resp.status == 400
                assert HOST_REFUSED in (await resp.json())["error"]["message"]


async def test_edit_validation(demo: Any) -> None:
    gw = demo[0]
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("prompt", "no image")
        form.add_field("model", "demo")
        async with http.post(f"{gw.v1}/images/edits", data=form) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["param"] == "image"
        too_many = {
            "model": "demo",
            "prompt": "x",
            "images": [base64.b64encode(png(8, 8, (1, 2, 3))).decode()] * 9,
        }
        async with http.post(f"{gw.v1}/images/edits", json=too_many) as resp:
            assert resp.status == 400
            assert "at most 8 input images" in (await resp.json())["error"]["message"]


async def test_task_a_model_cannot_do_is_a_400(tmp_path: Path) -> None:
    cfg = config_dir(tmp_path, ["openai"], single("openai", "dall-e-3"))
    env = {"OPENAI_API_KEYS": OPENAI_KEY, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    async with run_gateway(cfg, tmp_path / "f", env) as gw:
        async with openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk:
            with pytest.raises(openai.BadRequestError) as err:
                await sdk.images.edit(
                    model="m", prompt="x", image=("a.png", png(8, 8, (1, 1, 1)), "image/png")
                )
        assert "does not support edit" in err.value.message


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
async def test_variation_through_edit_when_the_route_allows_it(tmp_path: Path) -> None:
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}
        routes = single("openai", "gpt-image-1", variation_prompt="A variation of this image")
        cfg = config_dir(tmp_path, ["openai"], routes)
        async with run_gateway(cfg, tmp_path / "f", env) as gw:
            async with openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk:
                await sdk.images.create_variation(
                    model="m", image=("a.png", png(512, 512, (9, 9, 9)), "image/png")
                )
        sent = fake_openai.state(app).last
        assert sent.path == "/v1/images/edits"
        assert sent.field("prompt") == "A variation of this image"


async def _tiny_png(request: web.Request) -> web.Response:
    return web.Response(body=png_bytes(8, 8), content_type="image/png")
