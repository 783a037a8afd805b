"""Result URLs an upstream names go through the SSRF guard, and must serve an image.

The upstream (127.0.0.1:A, base_url) answers with a URL on a "secret" server of another
loopback origin, as a hostile provider or a tampered plain-http answer would."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from aiohttp import web

from tests.gateway import run_gateway
from tests.security.origins import PNG, Seen, png, recording_app, serve_on

SECRET = b"redis_password=hunter2 internal-only"


async def secret(_: web.Request) -> web.Response:
    return web.Response(body=SECRET, content_type="image/png")  # lies about its type


@dataclass
class Setup:
    sdk: openai.AsyncOpenAI
    seen: Seen
    other: str


@contextlib.asynccontextmanager
async def setup(
    tmp_path: Path, result_path: str, results: dict[str, Any] | None = None, rehost: bool = False
) -> AsyncIterator[Setup]:
    seen = Seen()
    where: dict[str, str] = {}

    async def generate(_: web.Request) -> web.Response:
        return web.json_response({"data": [{"url": f"{where['other']}{result_path}"}]})

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"{where['other']}/secret")

    async def unfollowed(_: web.Request) -> web.Response:
        # a 3xx the gateway cannot follow (no Location), an image as its body
        return web.Response(status=300, body=PNG, content_type="image/png")

    routes = {
        "/gen": generate,
        "/png": png,
        "/secret": secret,
        "/redirect": redirect,
        "/unfollowed": unfollowed,
    }
    async with contextlib.AsyncExitStack() as stack:
        base = await stack.enter_async_context(serve_on(recording_app(routes, seen), "127.0.0.1"))
        where["other"] = await stack.enter_async_context(
            serve_on(recording_app(routes, seen), "127.0.0.1")
        )
        results_doc = {"rehost_urls": rehost, **(results or {})}
        doc = {
            "id": "hostile",
            "title": "names result URLs on other hosts",
            "base_url": "${HOSTILE_BASE}",
            "auth": {"required": False},
            "models": {"m": {}},
            "results": results_doc,
            "tasks": {
                "generate": {
                    "steps": [{"name": "gen", "request": {"path": "/gen"}, "images": "data[].url"}]
                }
            },
        }
        root = tmp_path / "config"
        (root / "providers.d").mkdir(parents=True)
        text = yaml.safe_dump(doc, sort_keys=False).replace("OTHER_ORIGIN", where["other"])
        (root / "providers.d" / "hostile.yaml").write_text(text)
        routes_doc = {
            "demo": False,
            "routes": {"r": {"targets": [{"provider": "hostile", "model": "m"}]}},
        }
        (root / "routes.yaml").write_text(yaml.safe_dump(routes_doc))
        gw = await stack.enter_async_context(
            run_gateway(root, tmp_path / "files", {"HOSTILE_BASE": base})
        )
        sdk = await stack.enter_async_context(
            openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=10)
        )
        yield Setup(sdk, seen, where["other"])


@pytest.mark.parametrize("path", ["/secret", "/png", "/redirect"])
async def test_a_loopback_result_url_is_refused(
    tmp_path: Path, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with setup(tmp_path, path) as s:
        with pytest.raises(openai.APIStatusError) as info:
            await s.sdk.images.generate(model="r", prompt="x", response_format="b64_json")
        assert info.value.status_code == 502
        body = str(info.value.body)
        assert "does not fetch" in body
        assert "127.0.0.1" not in body and "loopback" not in body  # generic for the client
        assert not [r for r in s.seen.requests if r[0] == s.other]  # never even connected
    assert "loopback" in caplog.text  # the reason is in the log


async def test_rehosting_a_loopback_result_url_is_refused(tmp_path: Path) -> None:
    async with setup(tmp_path, "/secret", rehost=True) as s:
        with pytest.raises(openai.APIStatusError) as info:
            await s.sdk.images.generate(model="r", prompt="x", response_format="url")
        assert info.value.status_code == 502
        assert not [r for r in s.seen.requests if r[0] == s.other]


async def test_private_origins_allows_a_self_hosted_file_server(tmp_path: Path) -> None:
    allow = {"private_origins": ["OTHER_ORIGIN"]}
    async with setup(tmp_path, "/png", allow) as s:
        result = await s.sdk.images.generate(model="r", prompt="x", response_format="b64_json")
        assert result.data[0].b64_json
        assert base64.b64decode(result.data[0].b64_json) == PNG


async def test_bytes_that_are_not_an_image_never_reach_the_client(tmp_path: Path) -> None:
    allow = {"private_origins": ["OTHER_ORIGIN"]}
    for fmt, rehost in (("b64_json", False), ("url", True)):
        async with setup(tmp_path / fmt, "/secret", allow, rehost=rehost) as s:
            with pytest.raises(openai.APIStatusError) as info:
                await s.sdk.images.generate(model="r", prompt="x", response_format=fmt)  # type: ignore[arg-type]
            assert info.value.status_code == 502
            assert "not serve an image" in str(info.value.body)
            assert "hunter2" not in str(info.value.body)


async def test_a_3xx_the_download_does_not_follow_is_no_image(tmp_path: Path) -> None:
    allow = {"private_origins": ["OTHER_ORIGIN"]}
    async with setup(tmp_path, "/unfollowed", allow) as s:
        with pytest.raises(openai.APIStatusError) as info:
            await s.sdk.images.generate(model="r", prompt="x", response_format="b64_json")
        assert info.value.status_code == 502
        assert "downloading the result failed: HTTP 300" in str(info.value.body)
