"""A real gateway in front of a fake submit-and-poll upstream that counts what it receives,
for the async jobs tests (test_jobs_sdk.py, test_job_events.py).

``POST /submit`` -> ``{"id": "t1"}``; ``GET /tasks/t1`` -> ``running`` at 40 % until the test
sets ``done`` (then ``done`` with ``data[].url`` = ``image_url``) or ``failed``; ``GET
/a.png`` serves a small PNG (for jobs that want base64: the gateway downloads the URL).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import openai
import yaml
from aiohttp import web

from tests.gateway import Gateway, run_gateway
from tests.upstreams import serve_upstream
from tests.upstreams.common import image_bytes

PNG = image_bytes("png", 8, 8)


@dataclass
class Upstream:
    submits: int = 0
    polls: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    failed: bool = False
    image_url: str = "https://img.test/a.png"


UP = web.AppKey("up", Upstream)

PROVIDER = {
    "id": "slow",
    "title": "jobs test: submit then poll",
    "base_url": "${SLOW_BASE_URL}",
    "auth": {"required": False},
    "models": {"m": {}},
    "tasks": {
        "generate": {
            "steps": [
                {
                    "name": "submit",
                    "request": {"method": "POST", "path": "/submit"},
                    "extract": {"id": "id"},
                },
                {
                    "name": "poll",
                    "request": {"method": "GET", "path": "/tasks/{{ steps.submit.id }}"},
                    "until": "status == 'done'",
                    "fail_if": "status == 'failed'",
                    "every": "20ms",
                    "timeout": "30s",
                    "progress": "progress",
                    "images": "data[].url",
                },
            ]
        }
    },
}


async def _submit(request: web.Request) -> web.Response:
    request.app[UP].submits += 1
    return web.json_response({"id": "t1"})


async def _task(request: web.Request) -> web.Response:
    up = request.app[UP]
    up.polls += 1
    if up.failed:
        return web.json_response({"status": "failed", "error": "NSFW content detected"})
    if not up.done.is_set():
        return web.json_response({"status": "running", "progress": 40})
    return web.json_response({"status": "done", "data": [{"url": up.image_url}]})


async def _png(request: web.Request) -> web.Response:
    return web.Response(body=PNG, content_type="image/png")


@dataclass
class Env:
    gw: Gateway
    up: Upstream
    a: openai.AsyncOpenAI
    b: openai.AsyncOpenAI
    http: aiohttp.ClientSession
    base: str  # the upstream's own URL


@contextlib.asynccontextmanager
async def jobs_env(tmp_path: Path, extra: dict[str, str]) -> AsyncIterator[Env]:
    root = tmp_path / "config"
    (root / "providers.d").mkdir(parents=True)
    (root / "providers.d" / "slow.yaml").write_text(yaml.safe_dump(PROVIDER, sort_keys=False))
    routes = {"demo": False, "routes": {"slow": {"targets": [{"provider": "slow", "model": "m"}]}}}
    (root / "routes.yaml").write_text(yaml.safe_dump(routes))
    app = web.Application()
    app[UP] = Upstream()
    app.router.add_post("/submit", _submit)
    app.router.add_get("/tasks/{id}", _task)
    app.router.add_get("/a.png", _png)
    async with serve_upstream(app) as base:
        genv = {
            "SLOW_BASE_URL": base,
            "PIXGATE_POLL_INTERVAL_SCALE": "1",
            "PIXGATE_API_KEYS": "key-a,key-b",
            "PIXGATE_ADMIN_KEY": "admin-key",
            **extra,
        }
        async with run_gateway(root, tmp_path / "files", genv) as gw:
            async with (
                openai.AsyncOpenAI(base_url=gw.v1, api_key="key-a", max_retries=0, timeout=10) as a,
                openai.AsyncOpenAI(base_url=gw.v1, api_key="key-b", max_retries=0, timeout=10) as b,
                aiohttp.ClientSession(headers={"Authorization": "Bearer key-a"}) as http,
            ):
                yield Env(gw, app[UP], a, b, http, base)
