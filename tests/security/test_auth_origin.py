"""A provider's key goes only to its base_url ORIGIN (scheme, host, port), unless widened.

Real upstreams on different loopback origins record the headers they receive: the submit
server (127.0.0.1:A, base_url), and an "elsewhere" server reached as localhost:A,
127.0.0.1:B or 127.0.0.2:C (a polling URL, a CDN, a result host)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from aiohttp import web

from engine.config.loader import build_snapshot
from tests.gateway import run_gateway
from tests.security.origins import Seen, png, recording_app, serve_on

KEY = "bfl-secret-key-0123456789"
ROUTES = {"demo": False, "routes": {"r": {"targets": [{"provider": "twohost", "model": "m"}]}}}


def _provider(auth: dict[str, Any], poll_request: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "twohost",
        "title": "submit on one origin, poll and results on another",
        "base_url": "${SUBMIT_BASE}",
        "auth": {"header": "x-key", "keys": "${TWOHOST_API_KEYS:-}", **auth},
        "models": {"m": {}},
        "tasks": {
            "generate": {
                "steps": [
                    {
                        "name": "submit",
                        "request": {"method": "POST", "path": "/submit", "json": {"p": "x"}},
                        "extract": {"polling_url": "polling_url"},
                    },
                    {
                        "name": "poll",
                        "request": {"method": "GET", **poll_request},
                        "until": "status == 'Ready'",
                        "first_after": "0s",
                        "images": "[result.sample]",
                    },
                ]
            }
        },
    }


@dataclass
class Setup:
    sdk: openai.AsyncOpenAI
    seen: Seen
    base: str  # http://127.0.0.1:A
    other: str  # the origin of the polling URL and the result


@contextlib.asynccontextmanager
async def setup(
    tmp_path: Path,
    other_kind: str,
    auth: dict[str, Any] | None = None,
    poll_request: dict[str, Any] | None = None,
    redirect_poll: bool = False,
) -> AsyncIterator[Setup]:
    seen = Seen()
    where: dict[str, str] = {}

    async def submit(_: web.Request) -> web.Response:
        poll = f"{where['base']}/redirect" if redirect_poll else f"{where['other']}/poll"
        return web.json_response({"polling_url": poll})

    async def poll(_: web.Request) -> web.Response:
        sample = f"{where['other']}/sample.png"
        return web.json_response({"status": "Ready", "result": {"sample": sample}})

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"{where['other']}/poll")

    routes = {"/submit": submit, "/poll": poll, "/sample.png": png, "/redirect": redirect}
    async with contextlib.AsyncExitStack() as stack:
        base = await stack.enter_async_context(serve_on(recording_app(routes, seen), "127.0.0.1"))
        port = base.rsplit(":", 1)[1]
        where["base"] = base
        if other_kind == "localhost, same port":
            where["other"] = f"http://localhost:{port}"
        else:
            host = "127.0.0.2" if other_kind == "127.0.0.2" else "127.0.0.1"
            app = recording_app(routes, seen)
            where["other"] = await stack.enter_async_context(serve_on(app, host))
        doc = _provider(auth or {}, poll_request or {"url": "{{ steps.submit.polling_url }}"})
        root = tmp_path / "config"
        (root / "providers.d").mkdir(parents=True)
        text = yaml.safe_dump(doc, sort_keys=False).replace("OTHER_ORIGIN", where["other"])
        (root / "providers.d" / "twohost.yaml").write_text(text)
        (root / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
        env = {"SUBMIT_BASE": base, "TWOHOST_API_KEYS": KEY, "PIXGATE_FETCH_ALLOW_LOOPBACK": "1"}
        gw = await stack.enter_async_context(run_gateway(root, tmp_path / "files", env))
        sdk = await stack.enter_async_context(
            openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=10)
        )
        yield Setup(sdk, seen, base, where["other"])


OTHER_ORIGINS = ["localhost, same port", "127.0.0.1, other port", "127.0.0.2"]


@pytest.mark.parametrize("other_kind", OTHER_ORIGINS)
async def test_key_goes_to_base_origin_only(tmp_path: Path, other_kind: str) -> None:
    async with setup(tmp_path, other_kind) as s:
        result = await s.sdk.images.generate(model="r", prompt="a fox", response_format="b64_json")
        assert result.data[0].b64_json
        keys = s.seen.header_values("x-key")
        assert keys[f"{s.base}/submit"] == [KEY]
        assert keys[f"{s.other}/poll"] == [None]  # the polling URL is another origin
        assert keys[f"{s.other}/sample.png"] == [None]  # and so is the result download


async def test_send_to_widens_to_a_listed_origin(tmp_path: Path) -> None:
    async with setup(tmp_path, "127.0.0.2", auth={"send_to": ["OTHER_ORIGIN"]}) as s:
        await s.sdk.images.generate(model="r", prompt="a fox", response_format="b64_json")
        keys = s.seen.header_values("x-key")
        assert keys[f"{s.other}/poll"] == [KEY]
        assert keys[f"{s.other}/sample.png"] == [KEY]  # result downloads follow send_to too


async def test_a_listed_host_on_another_port_is_another_origin(tmp_path: Path) -> None:
    async with setup(tmp_path, "127.0.0.2", auth={"send_to": ["http://127.0.0.2:1"]}) as s:
        await s.sdk.images.generate(model="r", prompt="a fox", response_format="b64_json")
        assert s.seen.header_values("x-key")[f"{s.other}/poll"] == [None]


async def test_step_auth_list_widens_for_one_request(tmp_path: Path) -> None:
    request = {"url": "{{ steps.submit.polling_url }}", "auth": ["OTHER_ORIGIN"]}
    async with setup(tmp_path, "localhost, same port", poll_request=request) as s:
        await s.sdk.images.generate(model="r", prompt="a fox", response_format="b64_json")
        keys = s.seen.header_values("x-key")
        assert keys[f"{s.other}/poll"] == [KEY]  # this request lists the origin
        assert keys[f"{s.other}/sample.png"] == [None]  # downloads follow auth.send_to only


async def test_auth_false_keeps_the_steps_own_header(tmp_path: Path) -> None:
    request = {
        "path": "/poll",
        "auth": False,
        "headers": {"x-key": "the-step's-own-value"},
    }
    async with setup(tmp_path, "127.0.0.1, other port", poll_request=request) as s:
        await s.sdk.images.generate(model="r", prompt="a fox", response_format="b64_json")
        keys = s.seen.header_values("x-key")
        assert keys[f"{s.base}/poll"] == ["the-step's-own-value"]  # base origin, auth off


async def test_redirect_to_another_origin_drops_the_key(tmp_path: Path) -> None:
    request = {"path": "/redirect"}
    async with setup(
        tmp_path, "127.0.0.1, other port", poll_request=request, redirect_poll=True
    ) as s:
        await s.sdk.images.generate(model="r", prompt="a fox", response_format="b64_json")
        keys = s.seen.header_values("x-key")
        assert keys[f"{s.base}/redirect"] == [KEY]
        assert keys[f"{s.other}/poll"] == [None]


def _lint(tmp_path: Path, auth: dict[str, Any], request: dict[str, Any]) -> list[str]:
    root = tmp_path / "lint"
    (root / "providers.d").mkdir(parents=True)
    doc = _provider(auth, request)
    (root / "providers.d" / "twohost.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (root / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    built = build_snapshot(root, {"SUBMIT_BASE": "https://api.example", "TWOHOST_API_KEYS": KEY})
    return [f"{d.code} {d.path}" for d in built.diagnostics.items if d.code in ("W406", "E251")]


def test_lint_warns_when_a_url_step_could_send_the_key_elsewhere(tmp_path: Path) -> None:
    poll_url = "tasks.generate.steps[1].request.url"
    dynamic = {"url": "{{ steps.submit.polling_url }}"}
    assert _lint(tmp_path / "a", {}, dynamic) == [f"W406 {poll_url}"]
    widened = {"send_to": ["https://*.example"]}
    assert _lint(tmp_path / "b", widened, dynamic) == []  # the origins are listed: decided
    assert _lint(tmp_path / "c", {}, {**dynamic, "auth": False}) == []
    assert _lint(tmp_path / "d", {}, {"url": "https://api.example/v1/poll"}) == []
    assert _lint(tmp_path / "e", {}, {"url": "https://cdn.example/x"}) == [f"W406 {poll_url}"]
    listed = {"url": "https://cdn.example/x", "auth": ["cdn.example"]}
    assert _lint(tmp_path / "f", {}, listed) == []
    bad = _lint(tmp_path / "g", {"send_to": ["https://x.example/path"]}, dynamic)
    assert bad == ["E251 auth.send_to[0]"]
