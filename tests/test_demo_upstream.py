"""Tests of the built-in offline demo upstream, mounted under /_demo as the gateway does."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image

from engine.demo.render import render_image
from engine.demo.upstream import create_demo_app

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def _mounted(**kwargs: int) -> web.Application:
    app = web.Application()
    app.add_subapp("/_demo", create_demo_app(**kwargs))
    return app


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(_mounted())


def _solid_png(color: tuple[int, int, int], size: tuple[int, int] = (96, 96)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _fraction_close_to(img: Image.Image, color: tuple[int, int, int], tol: int = 30) -> float:
    """Fraction of the image's pixels within ``tol`` of ``color`` on every channel."""
    rgb = img.convert("RGB")
    close = 0
    for count, px in rgb.getcolors(maxcolors=rgb.width * rgb.height) or []:
        assert isinstance(px, tuple)
        if all(abs(int(c) - t) <= tol for c, t in zip(px, color, strict=True)):
            close += count
    return close / (rgb.width * rgb.height)


async def _fetch(client: TestClient[Any, Any], url: str) -> tuple[int, str, bytes]:
    """GET an absolute URL handed out by the demo, as an ordinary HTTP client would."""
    async with client.session.get(url) as resp:
        return resp.status, resp.content_type, await resp.read()


def _assert_openai_error(body: Any, param: str | None = None) -> None:
    assert set(body) == {"error"}
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == "invalid_request_error"
    assert err["code"] is None
    assert "param" in err
    if param is not None:
        assert err["param"] == param


# --------------------------------------------------------------------------------------------
# renderer


def test_render_sizes_formats_and_determinism() -> None:
    for fmt, pil_name in (("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")):
        img = _decode(render_image("a red fox", 320, 200, seed=1, fmt=fmt))
        assert img.format == pil_name
        assert img.size == (320, 200)
    assert render_image("same", 128, 128, seed=3) == render_image("same", 128, 128, seed=3)
    assert render_image("same", 128, 128, seed=3) != render_image("same", 128, 128, seed=4)


def test_render_is_fast() -> None:
    render_image("warm-up", 64, 64)
    start = time.perf_counter()
    render_image("A lighthouse on a cliff at sunset, oil painting", 1024, 1024, seed=7)
    assert time.perf_counter() - start < 0.5  # typically ~25 ms; generous for slow CI


def test_render_rejects_bad_input_bytes() -> None:
    with pytest.raises(ValueError, match="input image #1"):
        render_image("x", 64, 64, inputs=[b"definitely not an image"])
    with pytest.raises(ValueError, match="format"):
        render_image("x", 64, 64, fmt="gif")


def test_render_handles_extreme_prompts() -> None:
    for prompt in ("x" * 4000, "word " * 800, "中文 emoji 🎨 ·", ""):
        assert _decode(render_image(prompt, 64, 96)).size == (64, 96)


# --------------------------------------------------------------------------------------------
# generations


async def test_generation_b64_png_default(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/_demo/v1/images/generations", json={"prompt": "a cat", "size": "256x128"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert isinstance(body["created"], int)
    assert body["usage"] == {"generated_images": 1}
    assert len(body["data"]) == 1
    img = _decode(base64.b64decode(body["data"][0]["b64_json"]))
    assert img.format == "PNG"
    assert img.size == (256, 128)


async def test_generation_default_size_is_1024(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/_demo/v1/images/generations", json={"prompt": "default"})
    body = await resp.json()
    assert _decode(base64.b64decode(body["data"][0]["b64_json"])).size == (1024, 1024)


@pytest.mark.parametrize(("fmt", "pil_name"), [("jpeg", "JPEG"), ("webp", "WEBP")])
async def test_generation_output_formats(
    client: TestClient[Any, Any], fmt: str, pil_name: str
) -> None:
    resp = await client.post(
        "/_demo/v1/images/generations",
        json={"prompt": "fmt", "size": "128x128", "output_format": fmt},
    )
    assert resp.status == 200
    body = await resp.json()
    assert _decode(base64.b64decode(body["data"][0]["b64_json"])).format == pil_name


async def test_generation_n2_gives_distinct_images(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/_demo/v1/images/generations",
        json={"prompt": "twins", "n": 2, "size": "128x128", "seed": 5, "model": "whatever"},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["usage"] == {"generated_images": 2}
    first, second = (base64.b64decode(d["b64_json"]) for d in body["data"])
    assert first != second
    assert _decode(first).size == _decode(second).size == (128, 128)


async def test_generation_url_mode_serves_file(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/_demo/v1/images/generations",
        json={
            "prompt": "by url",
            "size": "200x100",
            "response_format": "url",
            "output_format": "webp",
        },
    )
    assert resp.status == 200
    url = (await resp.json())["data"][0]["url"]
    base = str(client.make_url("/_demo/files/"))
    assert url.startswith(base), (url, base)
    assert url.endswith(".webp")

    # The URL is absolute and fetchable as-is by an ordinary HTTP client.
    async with aiohttp.ClientSession() as session, session.get(url) as file_resp:
        assert file_resp.status == 200
        assert file_resp.content_type == "image/webp"
        img = _decode(await file_resp.read())
    assert img.format == "WEBP"
    assert img.size == (200, 100)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"size": "64x64"}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"prompt": "ok", "size": "10x10"}, "size"),
        ({"prompt": "ok", "size": "abc"}, "size"),
        ({"prompt": "ok", "size": "4096x1024"}, "size"),
        ({"prompt": "ok", "n": 9}, "n"),
        ({"prompt": "ok", "n": 0}, "n"),
        ({"prompt": "ok", "n": "two"}, "n"),
        ({"prompt": "ok", "n": True}, "n"),
        ({"prompt": "ok", "seed": "abc"}, "seed"),
        ({"prompt": "ok", "output_format": "gif"}, "output_format"),
        ({"prompt": "ok", "response_format": "binary"}, "response_format"),
    ],
)
async def test_generation_validation_errors(
    client: TestClient[Any, Any], payload: dict[str, Any], param: str
) -> None:
    resp = await client.post("/_demo/v1/images/generations", json=payload)
    assert resp.status == 400
    _assert_openai_error(await resp.json(), param)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
async def test_generation_rejects_non_object_bodies(
    client: TestClient[Any, Any], raw: bytes
) -> None:
    resp = await client.post(
        "/_demo/v1/images/generations",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 400
    _assert_openai_error(await resp.json())


# --------------------------------------------------------------------------------------------
# edits


async def test_edit_multipart_two_images_shows_inputs(client: TestClient[Any, Any]) -> None:
    form = aiohttp.FormData()
    form.add_field("image[]", _solid_png((255, 0, 0)), filename="red.png")
    form.add_field("image[]", _solid_png((0, 0, 255)), filename="blue.png")
    form.add_field("prompt", "combine these")
    form.add_field("size", "512x512")
    resp = await client.post("/_demo/v1/images/edits", data=form)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    img = _decode(base64.b64decode(body["data"][0]["b64_json"]))
    assert img.size == (512, 512)
    # Each input is shown as a tile: clearly red and clearly blue regions exist.
    assert _fraction_close_to(img, (255, 0, 0)) > 0.02
    assert _fraction_close_to(img, (0, 0, 255)) > 0.02


async def test_edit_multipart_plain_image_field_default_size(
    client: TestClient[Any, Any],
) -> None:
    form = aiohttp.FormData()
    form.add_field("image", _solid_png((255, 0, 0), (300, 200)), filename="red.png")
    form.add_field("image", _solid_png((0, 255, 0), (50, 50)), filename="green.png")
    form.add_field("mask", _solid_png((0, 0, 0), (300, 200)), filename="mask.png")
    form.add_field("prompt", "default size")
    form.add_field("n", "2")
    form.add_field("response_format", "url")
    resp = await client.post("/_demo/v1/images/edits", data=form)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert len(body["data"]) == 2
    status, content_type, data = await _fetch(client, body["data"][0]["url"])
    assert status == 200
    assert content_type == "image/png"
    img = _decode(data)
    assert img.size == (300, 200)  # the first input image's size
    assert _fraction_close_to(img, (255, 0, 0)) > 0.02


async def test_edit_json_with_data_uri_and_raw_base64(client: TestClient[Any, Any]) -> None:
    red = base64.b64encode(_solid_png((255, 0, 0))).decode()
    resp = await client.post(
        "/_demo/v1/images/edits",
        json={
            "prompt": "json edit",
            "images": [f"data:image/png;base64,{red}", red],
            "size": "256x256",
        },
    )
    assert resp.status == 200, await resp.text()
    img = _decode(base64.b64decode((await resp.json())["data"][0]["b64_json"]))
    assert img.size == (256, 256)
    assert _fraction_close_to(img, (255, 0, 0)) > 0.05


async def test_edit_input_size_is_capped(client: TestClient[Any, Any]) -> None:
    form = aiohttp.FormData()
    form.add_field("image", _solid_png((10, 10, 10), (4096, 1024)), filename="wide.png")
    form.add_field("prompt", "big input")
    form.add_field("output_format", "jpeg")
    resp = await client.post("/_demo/v1/images/edits", data=form)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["size"] == "2048x512"


async def test_edit_validation_errors(client: TestClient[Any, Any]) -> None:
    # Missing prompt.
    form = aiohttp.FormData()
    form.add_field("image", _solid_png((1, 2, 3)), filename="a.png")
    resp = await client.post("/_demo/v1/images/edits", data=form)
    assert resp.status == 400
    _assert_openai_error(await resp.json(), "prompt")

    # Missing image.
    form = aiohttp.FormData()
    form.add_field("prompt", "no image")
    form.add_field("dummy", b"x", filename="x.bin")
    resp = await client.post("/_demo/v1/images/edits", data=form)
    assert resp.status == 400
    _assert_openai_error(await resp.json(), "image")

    # Image part that is not an image.
    form = aiohttp.FormData()
    form.add_field("image", b"garbage bytes", filename="a.png")
    form.add_field("prompt", "bad image")
    resp = await client.post("/_demo/v1/images/edits", data=form)
    assert resp.status == 400
    _assert_openai_error(await resp.json(), "image")

    # JSON form with invalid base64.
    resp = await client.post(
        "/_demo/v1/images/edits", json={"prompt": "p", "images": ["data:image/png;base64,@@@"]}
    )
    assert resp.status == 400
    _assert_openai_error(await resp.json(), "images")


# --------------------------------------------------------------------------------------------
# async tasks


async def _poll(client: TestClient[Any, Any], task_id: str) -> list[dict[str, Any]]:
    """Poll a task until it finishes (bounded by 4 s); return every observed body."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(4.0):
        while True:
            resp = await client.get(f"/_demo/v1/tasks/{task_id}")
            assert resp.status == 200
            body = await resp.json()
            seen.append(body)
            if body["status"] in ("succeeded", "failed"):
                return seen
            await asyncio.sleep(0.03)


async def test_task_flow_succeeds(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/_demo/v1/tasks",
        json={"prompt": "slow one", "size": "128x64", "n": 2, "delay": 0.4},
    )
    assert resp.status == 200
    created = await resp.json()
    assert created["status"] == "queued"
    task_id = created["task_id"]

    seen = await _poll(client, task_id)
    statuses = [s["status"] for s in seen]
    assert statuses[0] == "queued"
    assert "running" in statuses
    assert statuses[-1] == "succeeded"
    # The status never goes backwards and progress rises monotonically to 100.
    order = {"queued": 0, "running": 1, "succeeded": 2}
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress)
    assert all(0 <= p <= 100 for p in progress)
    assert progress[-1] == 100
    assert all("images" not in s for s in seen[:-1])

    final = seen[-1]
    assert final["task_id"] == task_id
    assert "error" not in final
    assert len(final["images"]) == 2
    fetched = []
    for url in final["images"]:
        assert url.startswith(str(client.make_url("/_demo/files/")))
        status, content_type, data = await _fetch(client, url)
        assert status == 200
        assert content_type == "image/png"
        fetched.append(data)
        assert _decode(fetched[-1]).size == (128, 64)
    assert fetched[0] != fetched[1]


async def test_task_with_input_images(client: TestClient[Any, Any]) -> None:
    red = base64.b64encode(_solid_png((255, 0, 0))).decode()
    resp = await client.post(
        "/_demo/v1/tasks",
        json={"prompt": "async edit", "images": [f"data:image/png;base64,{red}"], "delay": 0},
    )
    assert resp.status == 200
    final = (await _poll(client, (await resp.json())["task_id"]))[-1]
    assert final["status"] == "succeeded"
    status, _, data = await _fetch(client, final["images"][0])
    assert status == 200
    img = _decode(data)
    assert img.size == (96, 96)  # the input's size
    assert _fraction_close_to(img, (255, 0, 0)) > 0.03


async def test_task_fail_marker(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/_demo/v1/tasks", json={"prompt": "please [demo:fail] now", "delay": 0.2}
    )
    assert resp.status == 200
    seen = await _poll(client, (await resp.json())["task_id"])
    final = seen[-1]
    assert final["status"] == "failed"
    assert final["error"] == {"message": "demo task failed as requested"}
    assert "images" not in final


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"delay": 0.1}, "prompt"),
        ({"prompt": "x", "delay": -1}, "delay"),
        ({"prompt": "x", "delay": 31}, "delay"),
        ({"prompt": "x", "delay": "soon"}, "delay"),
        ({"prompt": "x", "n": 9}, "n"),
        ({"prompt": "x", "size": "10x10"}, "size"),
        ({"prompt": "x", "images": "not base64 !!"}, "images"),
        ({"prompt": "x", "images": [base64.b64encode(b"not an image").decode()]}, "images"),
    ],
)
async def test_task_validation_errors(
    client: TestClient[Any, Any], payload: dict[str, Any], param: str
) -> None:
    resp = await client.post("/_demo/v1/tasks", json=payload)
    assert resp.status == 400
    _assert_openai_error(await resp.json(), param)


async def test_task_eviction_keeps_at_most_max_tasks(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_mounted(max_tasks=2))
    ids = []
    for i in range(2):
        resp = await client.post("/_demo/v1/tasks", json={"prompt": f"t{i}", "delay": 0})
        ids.append((await resp.json())["task_id"])
        await _poll(client, ids[-1])
    resp = await client.post("/_demo/v1/tasks", json={"prompt": "t2", "delay": 0})
    assert resp.status == 200
    ids.append((await resp.json())["task_id"])
    # The oldest finished task was evicted; the others remain.
    assert (await client.get(f"/_demo/v1/tasks/{ids[0]}")).status == 404
    assert (await client.get(f"/_demo/v1/tasks/{ids[1]}")).status == 200
    assert (await client.get(f"/_demo/v1/tasks/{ids[2]}")).status == 200


async def test_pending_tasks_are_cancelled_on_cleanup(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_mounted())
    resp = await client.post("/_demo/v1/tasks", json={"prompt": "long", "delay": 30})
    assert resp.status == 200
    await client.close()  # runs on_cleanup; must not hang for 30 s nor leak the task


# --------------------------------------------------------------------------------------------
# files, 404s, index


async def test_unknown_task_and_file_are_404(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/_demo/v1/tasks/task_doesnotexist")
    assert resp.status == 404
    body = await resp.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] is None

    resp = await client.get("/_demo/files/nope.png")
    assert resp.status == 404
    assert (await resp.json())["error"]["message"]


async def test_file_store_is_bounded(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_mounted(max_files=2))
    urls = []
    for i in range(3):
        resp = await client.post(
            "/_demo/v1/images/generations",
            json={"prompt": f"p{i}", "size": "64x64", "response_format": "url"},
        )
        urls.append((await resp.json())["data"][0]["url"])
    assert [(await _fetch(client, url))[0] for url in urls] == [404, 200, 200]


async def test_index_describes_endpoints(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/_demo/")
    assert resp.status == 200
    body = await resp.json()
    assert body["base_url"] == str(client.make_url("/_demo"))
    assert "generations" in body["endpoints"]


async def test_unknown_paths_and_methods_get_json_errors(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/_demo/v1/nope")
    assert resp.status == 404
    _assert_openai_error(await resp.json())

    resp = await client.get("/_demo/v1/images/generations")
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]
    _assert_openai_error(await resp.json())


async def test_large_bodies_bypass_parent_client_max_size(client: TestClient[Any, Any]) -> None:
    # ~3 MiB of incompressible PNG: above aiohttp's default 1 MiB client_max_size.
    noise = Image.frombytes("RGB", (1024, 1024), bytes(range(256)) * (3 * 1024 * 4))
    buf = io.BytesIO()
    noise.save(buf, format="PNG", compress_level=0)
    big = buf.getvalue()
    assert len(big) > 2 * 1024 * 1024

    form = aiohttp.FormData()
    form.add_field("image", big, filename="big.png")
    form.add_field("prompt", "big multipart")
    form.add_field("size", "64x64")
    resp = await client.post("/_demo/v1/images/edits", data=form)
    assert resp.status == 200, await resp.text()

    resp = await client.post(
        "/_demo/v1/images/edits",
        json={"prompt": "big json", "images": [base64.b64encode(big).decode()], "size": "64x64"},
    )
    assert resp.status == 200, await resp.text()
