"""CORS over real HTTP: preflights answered before auth, headers on answers, errors and
streams, configured origins, and never on /admin. A real browser: test_cors_browser.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from engine.config.loader import build_snapshot
from tests.e2e.providers import config_dir, single
from tests.gateway import REPO, run_gateway

CLIENT_KEY = "pg-client-key-0123456789"
PAGE = "https://app.example"
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
}
BODY = {"model": "demo", "prompt": "x", "size": "64x64", "response_format": "b64_json"}


async def call(
    method: str, url: str, headers: dict[str, str], json: Any = None
) -> tuple[int, Any, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, json=json) as resp,
    ):
        body = await resp.read()
        return resp.status, resp.headers, body


async def test_default_any_origin_on_v1_with_the_gateway_headers_exposed(
    tmp_path: Path,
) -> None:
    env = {"PIXGATE_API_KEYS": CLIENT_KEY}
    async with run_gateway(REPO, tmp_path / "files", env) as gw:
        # The preflight carries no key: it is answered before client auth.
        status, headers, _ = await call("OPTIONS", f"{gw.v1}/images/generations", PREFLIGHT)
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Access-Control-Allow-Methods"] == "GET, POST"
        assert (
            headers["Access-Control-Allow-Headers"] == PREFLIGHT["Access-Control-Request-Headers"]
        )
        assert headers["Access-Control-Max-Age"] == "600"

        auth = {"Origin": PAGE, "Authorization": f"Bearer {CLIENT_KEY}"}
        status, headers, _ = await call("POST", f"{gw.v1}/images/generations", auth, BODY)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        exposed = headers["Access-Control-Expose-Headers"].split(", ")
        assert {"x-request-id", "x-pixgate-provider", "x-pixgate-route", "retry-after"} <= set(
            exposed
        )

        # A page can read why it was refused.
        wrong = {"Origin": PAGE, "Authorization": "Bearer nope"}
        status, headers, body = await call("POST", f"{gw.v1}/images/generations", wrong, BODY)
        assert status == 401 and headers["Access-Control-Allow-Origin"] == "*"
        assert b"invalid_api_key" in body

        # Streams carry the headers too (they are sent before the first event).
        stream = {**BODY, "stream": True}
        status, headers, body = await call("POST", f"{gw.v1}/images/generations", auth, stream)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        assert b"image_generation.completed" in body

        # Without an Origin header (not a browser's cross-origin call): no CORS headers.
        key_only = {"Authorization": f"Bearer {CLIENT_KEY}"}
        status, headers, _ = await call("GET", f"{gw.v1}/models", key_only)
        assert status == 200 and "Access-Control-Allow-Origin" not in headers


async def test_never_on_admin(tmp_path: Path) -> None:
    env = {"PIXGATE_ADMIN_KEY": "admin-key-0123456789"}
    async with run_gateway(REPO, tmp_path / "files", env) as gw:
        for path in ("/admin/config", "/admin/keys"):
            status, headers, _ = await call("OPTIONS", gw.url + path, PREFLIGHT)
            assert status != 204 and "Access-Control-Allow-Origin" not in headers
            admin = {"Origin": PAGE, "Authorization": "Bearer admin-key-0123456789"}
            status, headers, _ = await call("GET", gw.url + path, admin)
            assert status == 200 and "Access-Control-Allow-Origin" not in headers


def _with_cors(tmp_path: Path, cors: dict[str, Any]) -> Path:
    return config_dir(
        tmp_path, ["demo"], {**single("demo", "demo-v1", "demo"), "demo": True, "cors": cors}
    )


async def test_configured_origins_headers_and_max_age(tmp_path: Path) -> None:
    cors = {
        "allow_origins": ["https://chat.example"],
        "allow_headers": ["Authorization", "Content-Type"],
        "expose_headers": ["x-request-id"],
        "max_age": "1h",
    }
    async with run_gateway(_with_cors(tmp_path, cors), tmp_path / "files") as gw:
        url = f"{gw.v1}/images/generations"
        ok = {**PREFLIGHT, "Origin": "https://chat.example"}
        status, headers, _ = await call("OPTIONS", url, ok)
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == "https://chat.example"
        assert headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
        assert headers["Access-Control-Max-Age"] == "3600"
        assert "Origin" in headers["Vary"]
        status, headers, _ = await call("POST", url, {"Origin": "https://chat.example"}, BODY)
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "https://chat.example"
        assert headers["Access-Control-Expose-Headers"] == "x-request-id"
        assert "Origin" in headers.getall("Vary")

        evil = {**PREFLIGHT, "Origin": "https://evil.example"}
        status, headers, body = await call("OPTIONS", url, evil)
        assert status == 403 and "Access-Control-Allow-Origin" not in headers
        assert b"cors.allow_origins" in body
        status, headers, _ = await call("POST", url, {"Origin": "https://evil.example"}, BODY)
        assert "Access-Control-Allow-Origin" not in headers  # the browser keeps the answer


async def test_cors_can_be_turned_off(tmp_path: Path) -> None:
    async with run_gateway(_with_cors(tmp_path, {"enabled": False}), tmp_path / "f") as gw:
        status, headers, _ = await call("OPTIONS", f"{gw.v1}/images/generations", PREFLIGHT)
        assert status == 405 and "Access-Control-Allow-Origin" not in headers


def test_admin_paths_are_rejected_at_lint(tmp_path: Path) -> None:
    root = _with_cors(tmp_path, {"paths": ["/v1/", "/admin/"]})
    lines = [d.format() for d in build_snapshot(root, {}).diagnostics.sorted()]
    assert any("E101 cors.paths[1]" in line for line in lines), lines


async def test_a_file_the_handler_streams_itself_carries_the_headers(tmp_path: Path) -> None:
    """/files answers start their response in the handler (not the middleware): a covered
    path still gets its CORS headers, the exposed `prefix*` ones expanded."""
    cors = {"paths": ["/v1/", "/files/"], "expose_headers": ["x-content-*", "etag"]}
    async with run_gateway(_with_cors(tmp_path, cors), tmp_path / "files") as gw:
        url_body = {**BODY, "response_format": "url"}
        status, _, body = await call("POST", f"{gw.v1}/images/generations", {}, url_body)
        assert status == 200
        image_url = json.loads(body)["data"][0]["url"]
        status, headers, _ = await call("GET", image_url, {"Origin": PAGE})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        exposed = headers["Access-Control-Expose-Headers"].split(", ")
        assert exposed == ["x-content-type-options", "etag"]
        status, headers, _ = await call("GET", image_url, {})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers
