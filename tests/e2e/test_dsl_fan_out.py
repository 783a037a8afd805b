"""`fan_out` end to end, on a grid-then-upscale protocol (the midjourney-proxy shape): one
imagine task gives a grid with U1..U4 buttons; n upscales are submitted and each polled.

Images come back in item order even when a later item finishes first; one failing upscale
costs one image (x-pixgate-failed: 1); no more than `parallel` upscales run at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.e2e.dsl_provider import gateway_sdk, provider_doc


@dataclass
class Grid:
    polls: dict[str, int] = field(default_factory=dict)
    running: int = 0
    most_running: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)


GRID = web.AppKey("grid", Grid)
BUTTONS = [{"customId": f"MJ::JOB::upsample::{i}::abc", "label": f"U{i}"} for i in (1, 2, 3, 4)]
BUTTONS += [{"customId": "MJ::JOB::reroll::0::abc", "label": "🔄"}]


async def _imagine(request: web.Request) -> web.Response:
    return web.json_response({"code": 1, "description": "Submitted", "result": "grid-1"})


async def _action(request: web.Request) -> web.Response:
    grid = request.app[GRID]
    body = await request.json()
    grid.actions.append(body)
    grid.running += 1
    grid.most_running = max(grid.most_running, grid.running)
    index = body["customId"].split("::")[3]
    return web.json_response({"code": 1, "result": f"up-{index}"})


async def _fetch(request: web.Request) -> web.Response:
    grid = request.app[GRID]
    task = request.match_info["id"]
    grid.polls[task] = grid.polls.get(task, 0) + 1
    if task == "grid-1":
        return web.json_response({"id": task, "status": "SUCCESS", "buttons": BUTTONS,
                                  "imageUrl": "https://cdn.test/grid.png"})  # fmt: skip
    if task == "up-1" and grid.polls[task] < 3:  # the first item finishes last
        await asyncio.sleep(0.05)
        return web.json_response({"id": task, "status": "IN_PROGRESS", "progress": "40%"})
    grid.running -= 1
    if task == "up-2":
        return web.json_response({"id": task, "status": "FAILURE", "failReason": "banned"})
    return web.json_response(
        {"id": task, "status": "SUCCESS", "imageUrl": f"https://cdn.test/{task}.png"}
    )


POLL = {"until": "status == 'SUCCESS'", "fail_if": "status == 'FAILURE'", "every": "1s",
        "error_message": "failReason"}  # fmt: skip
STEPS: list[dict[str, Any]] = [
    {"name": "imagine",
     "request": {"path": "/mj/submit/imagine", "json": {"prompt": "{{ prompt }}"}},
     "extract": {"task_id": "result"}},
    {"name": "grid",
     "request": {"method": "GET", "path": "/mj/task/{{ steps.imagine.task_id }}/fetch"},
     "extract": {"id": "id", "upscales": "buttons[?starts_with(label, 'U')].customId"}, **POLL},
    {"name": "upscale",
     "fan_out": {"items": "steps.grid.upscales", "as": "button", "limit": "n", "parallel": 2},
     "steps": [
         {"name": "action", "request": {"path": "/mj/submit/action",
          "json": {"customId": "{{ button }}", "taskId": "{{ steps.grid.id }}",
                   "position": "{{ loop.index }}"}},
          "extract": {"task_id": "result"}},
         {"name": "fetch", "request": {"method": "GET",
          "path": "/mj/task/{{ steps.action.task_id }}/fetch"}, "images": "imageUrl", **POLL},
     ]},
]  # fmt: skip


async def test_grid_upscales_in_order_with_one_failure(tmp_path: Path) -> None:
    app = web.Application()
    app[GRID] = Grid()
    app.router.add_post("/mj/submit/imagine", _imagine)
    app.router.add_post("/mj/submit/action", _action)
    app.router.add_get("/mj/task/{id}/fetch", _fetch)
    doc = provider_doc(STEPS, model={"images_per_call": 4})
    async with gateway_sdk(tmp_path, doc, app) as sdk:
        raw = await sdk.images.with_raw_response.generate(model="m", prompt="a fox", n=3)
    result = raw.parse()
    assert [d.url for d in result.data] == [
        "https://cdn.test/up-1.png",
        "https://cdn.test/up-3.png",
    ]
    assert raw.headers["x-pixgate-failed"] == "1"
    grid = app[GRID]
    assert sorted((a["customId"], a["taskId"], a["position"]) for a in grid.actions) == [
        (f"MJ::JOB::upsample::{i}::abc", "grid-1", i) for i in (1, 2, 3)
    ]
    assert grid.most_running <= 2


async def test_every_item_failing_fails_the_request_with_the_reason(tmp_path: Path) -> None:
    app = web.Application()
    app[GRID] = Grid()
    app.router.add_post("/mj/submit/imagine", _imagine)
    app.router.add_post("/mj/submit/action", _action)
    app.router.add_get("/mj/task/{id}/fetch", _fetch)
    steps = [
        *STEPS[:2],
        {**STEPS[2], "fan_out": {"items": "steps.grid.upscales[1:2]", "as": "button"}},
    ]
    async with gateway_sdk(tmp_path, provider_doc(steps), app) as sdk:
        with pytest.raises(openai.APIStatusError) as info:
            await sdk.images.generate(model="m", prompt="a fox")
    assert info.value.status_code == 502
    assert "banned" in str(info.value.message)
