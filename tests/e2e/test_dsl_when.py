"""`when:` end to end: a submit that may already finish (`Prefer: wait`) and a poll that runs
only when it did not. The images come from whichever step ran and produced them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from tests.e2e.dsl_provider import gateway_sdk, provider_doc

SEEN = web.AppKey("seen", list[str])


async def _submit(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[SEEN].append(f"submit prefer={request.headers.get('Prefer')}")
    get = str(request.url.with_path("/predictions/p1"))
    if "quick" in body["input"]["prompt"]:
        return web.json_response(
            {"status": "succeeded", "output": ["https://img.test/quick.png"], "urls": {"get": get}}
        )
    return web.json_response({"status": "starting", "output": None, "urls": {"get": get}})


async def _get(request: web.Request) -> web.Response:
    request.app[SEEN].append("poll")
    return web.json_response({"status": "succeeded", "output": ["https://img.test/slow.png"]})


STEPS: list[dict[str, Any]] = [
    {"name": "submit",
     "request": {"path": "/predictions", "headers": {"Prefer": "wait"},
                 "json": {"input": {"prompt": "{{ prompt }}"}}},
     "extract": {"status": "status", "get_url": "urls.get"},
     "images": "status == 'succeeded' && output || null"},
    {"name": "poll",
     "when": "steps.submit.status != 'succeeded'",
     "request": {"method": "GET", "url": "{{ steps.submit.get_url }}"},
     "until": "status == 'succeeded'", "fail_if": "status == 'failed'", "every": "1s",
     "images": "output"},
]  # fmt: skip


async def test_the_poll_runs_only_when_the_submit_did_not_finish(tmp_path: Path) -> None:
    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/predictions", _submit)
    app.router.add_get("/predictions/p1", _get)
    async with gateway_sdk(tmp_path, provider_doc(STEPS), app) as sdk:
        quick = await sdk.images.generate(model="m", prompt="a quick fox")
        assert app[SEEN] == ["submit prefer=wait"]
        slow = await sdk.images.generate(model="m", prompt="a slow fox")
    assert quick.data[0].url == "https://img.test/quick.png"
    assert slow.data[0].url == "https://img.test/slow.png"
    assert app[SEEN] == ["submit prefer=wait", "submit prefer=wait", "poll"]
