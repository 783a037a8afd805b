"""Every place a client can put an image URL goes through the SSRF guard, with one generic
refusal: edits (JSON images and mask, multipart), blend, variations, chat `image_url` parts,
markdown images in chat, an earlier turn's image (follow-up context), the Responses API.

A recording server on 127.0.0.1 stands for an internal service: it must see no request at all,
and the client's error must not say why (loopback, private, unresolvable) the URL was refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from engine.runtime.images.fetch import HOST_REFUSED
from engine.testing.images import image_b64
from tests.gateway import REPO, run_gateway
from tests.security.origins import PNG, Seen, png, recording_app, serve_on

PNG_URI = "data:image/png;base64," + image_b64(8, 8)
# What an attacker might name besides the internal server itself (in every spelling).
OTHER_TARGETS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/x.png",
    "http://[::ffff:127.0.0.1]:{port}/x.png",
    "http://2130706433:{port}/x.png",
    "http://localhost:{port}/x.png",
    "http://nowhere.invalid/x.png",
]


def _chat(content: Any, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"model": "demo", "messages": [*(history or []), {"role": "user", "content": content}]}


CARRIERS: dict[str, tuple[str, Any]] = {
    "edits json images": ("/v1/images/edits", lambda u: {
        "model": "demo", "prompt": "x", "images": [{"image_url": u}]}),
    "edits json image string": ("/v1/images/edits", lambda u: {
        "model": "demo", "prompt": "x", "image": u}),
    "edits json mask": ("/v1/images/edits", lambda u: {
        "model": "demo", "prompt": "x", "image": PNG_URI, "mask": u}),
    "blend": ("/v1/images/blend", lambda u: {
        "model": "demo", "prompt": "x", "images": [PNG_URI, {"image_url": u}]}),
    "variations": ("/v1/images/variations", lambda u: {"model": "demo", "image": u}),
    "chat image_url part": ("/v1/chat/completions", lambda u: _chat([
        {"type": "text", "text": "make it blue"}, {"type": "image_url", "image_url": {"url": u}}])),
    "chat markdown image": ("/v1/chat/completions", lambda u: _chat(f"make it blue ![in]({u})")),
    "chat follow-up context": ("/v1/chat/completions", lambda u: _chat("now make it blue", [
        {"role": "user", "content": "a cat"},
        {"role": "assistant", "content": f"![image]({u})"}])),
    "responses input_image": ("/v1/responses", lambda u: {
        "model": "demo", "tools": [{"type": "image_generation"}],
        "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "make it blue"},
            {"type": "input_image", "image_url": u}]}]}),
}  # fmt: skip


async def test_every_carrier_refuses_internal_urls_generically(tmp_path: Path) -> None:
    seen = Seen()
    async with serve_on(recording_app({"/x.png": png}, seen), "127.0.0.1") as internal:
        port = internal.rsplit(":", 1)[1]
        targets = [f"{internal}/x.png", *(t.format(port=port) for t in OTHER_TARGETS)]
        messages = set()
        async with run_gateway(REPO, tmp_path / "files") as gw, aiohttp.ClientSession() as http:
            for carrier, (path, body_for) in sorted(CARRIERS.items()):
                for target in targets:
                    async with http.post(gw.url + path, json=body_for(target)) as resp:
                        text = await resp.text()
                        assert resp.status == 400, (carrier, target, text)
                        error = (await resp.json())["error"]
                    assert HOST_REFUSED in error["message"], (carrier, target, error)
                    messages.add(error["message"].split(": ", 1)[-1])  # after "'<param>': "
                    for detail in ("loopback", "private", "link-local", "resolve", "169.254"):
                        assert detail not in error["message"], (carrier, target, error)
        # the same words for every kind of refusal (only the parameter named differs)
        assert len(messages) == 1, messages
    assert seen.requests == []  # the internal server never heard of any of it


async def test_multipart_parts_are_bytes_never_fetched(tmp_path: Path) -> None:
    seen = Seen()
    async with serve_on(recording_app({"/x.png": png}, seen), "127.0.0.1") as internal:
        async with run_gateway(REPO, tmp_path / "files") as gw, aiohttp.ClientSession() as http:
            for name in ("image", "image[]", "mask"):
                form = aiohttp.FormData(default_to_multipart=True)
                form.add_field("model", "demo")
                form.add_field("prompt", "x")
                if name == "mask":
                    form.add_field("image", PNG, filename="a.png", content_type="image/png")
                form.add_field(name, f"{internal}/x.png")
                async with http.post(f"{gw.v1}/images/edits", data=form) as resp:
                    error = (await resp.json())["error"]
                    assert resp.status == 400 and "not an image" in error["message"], (name, error)
    assert seen.requests == []
