"""When the first poll goes (`first_after`): one interval after a submit by default, at once
for a task whose first step polls, or whenever the provider file says.

A fake submit/poll upstream records when each request arrived; polling runs unscaled here
(PIXGATE_POLL_INTERVAL_SCALE=1) so the waits are the provider file's own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from aiohttp import web

from engine.config.loader import build_snapshot
from tests.gateway import run_gateway
from tests.upstreams import serve_upstream

ARRIVALS = web.AppKey("arrivals", list[tuple[str, float]])
EVERY = 0.3  # the polling interval of the providers below


def _provider(pid: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": pid,
        "title": f"first poll test: {pid}",
        "base_url": "${POLL_BASE_URL}",
        "auth": {"required": False},
        "models": {"m": {}},
        "tasks": {"generate": {"steps": steps}},
    }


SUBMIT = {
    "name": "submit",
    "request": {"method": "POST", "path": "/submit"},
    "extract": {"id": "id"},
}


def _poll(**extra: Any) -> dict[str, Any]:
    return {
        "name": "poll",
        "request": {"method": "GET", "path": "/tasks/{{ steps.submit.id }}"},
        "until": "status == 'done'",
        "every": f"{EVERY * 1000:g}ms",
        "images": "data[].url",
        **extra,
    }


STANDALONE = {  # a task whose only step polls: nothing was submitted before it
    "name": "poll",
    "request": {"method": "GET", "path": "/tasks/ready"},
    "until": "status == 'done'",
    "every": "5s",
    "images": "data[].url",
}

PROVIDERS = {
    "after-submit": [SUBMIT, _poll()],
    "at-once": [SUBMIT, _poll(first_after="0s")],
    "later": [SUBMIT, _poll(first_after="600ms")],
    "standalone": [STANDALONE],
}


async def _submit(request: web.Request) -> web.Response:
    request.app[ARRIVALS].append(("submit", time.monotonic()))
    return web.json_response({"id": "t1"})


async def _task(request: web.Request) -> web.Response:
    request.app[ARRIVALS].append(("poll", time.monotonic()))
    return web.json_response({"status": "done", "data": [{"url": "https://img.test/a.png"}]})


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[openai.AsyncOpenAI, list[Any]]]:
    root = tmp_path / "config"
    (root / "providers.d").mkdir(parents=True)
    routes: dict[str, Any] = {}
    for pid, steps in PROVIDERS.items():
        text = yaml.safe_dump(_provider(pid, steps), sort_keys=False)
        (root / "providers.d" / f"{pid}.yaml").write_text(text, encoding="utf-8")
        routes[pid] = {"targets": [{"provider": pid, "model": "m"}]}
    (root / "routes.yaml").write_text(yaml.safe_dump({"demo": False, "routes": routes}))
    app = web.Application()
    app[ARRIVALS] = []
    app.router.add_post("/submit", _submit)
    app.router.add_get("/tasks/{id}", _task)
    async with serve_upstream(app) as base:
        env = {"POLL_BASE_URL": base, "PIXGATE_POLL_INTERVAL_SCALE": "1"}
        async with run_gateway(root, tmp_path / "files", env) as gw:
            async with openai.AsyncOpenAI(
                base_url=gw.v1, api_key="x", max_retries=0, timeout=4
            ) as sdk:
                yield sdk, app[ARRIVALS]


async def _first_poll_gap(client: tuple[openai.AsyncOpenAI, list[Any]], model: str) -> float:
    sdk, arrivals = client
    arrivals.clear()
    result = await sdk.images.generate(model=model, prompt="a fox")
    assert result.data[0].url == "https://img.test/a.png"
    assert [what for what, _ in arrivals] == ["submit", "poll"]  # done at the first poll
    return float(arrivals[1][1] - arrivals[0][1])


async def test_the_first_poll_waits_one_interval_after_the_submit(client: Any) -> None:
    assert await _first_poll_gap(client, "after-submit") >= EVERY


async def test_first_after_sets_the_wait(client: Any) -> None:
    assert await _first_poll_gap(client, "later") >= 0.6
    # `0s`: no wait at all; far below the 0.3 s interval even on a slow machine
    assert await _first_poll_gap(client, "at-once") < EVERY


async def test_a_task_that_starts_by_polling_sends_at_once(client: Any) -> None:
    sdk, arrivals = client
    arrivals.clear()
    result = await sdk.images.generate(model="standalone", prompt="a fox")  # 4 s client timeout
    assert result.data[0].url == "https://img.test/a.png"
    assert [what for what, _ in arrivals] == ["poll"]  # with a 5 s interval, no wait before it


def test_first_after_belongs_to_polling_steps(tmp_path: Path) -> None:
    root = tmp_path / "config"
    (root / "providers.d").mkdir(parents=True)
    bad = _provider("bad", [{**SUBMIT, "first_after": "1s"}, _poll()])
    (root / "providers.d" / "bad.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    routes = {"demo": False, "routes": {"r": {"targets": [{"provider": "bad", "model": "m"}]}}}
    (root / "routes.yaml").write_text(yaml.safe_dump(routes))
    built = build_snapshot(root, {"POLL_BASE_URL": "http://127.0.0.1:1"})
    assert built.snapshot is None
    [error] = [d for d in built.diagnostics.errors if d.file == "providers.d/bad.yaml"]
    assert (error.code, error.path) == ("E101", "tasks.generate.steps[0]")
    assert error.message == "'until' is a dependency of 'first_after'"
