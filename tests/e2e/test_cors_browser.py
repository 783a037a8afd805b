"""CORS in a real headless Chromium: a page on another origin calls a real `pixgate serve`
with a client key (the browser sends the preflight itself), reads the answer and the
gateway's headers, and cannot read /admin."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.gateway import REPO, free_port, serve_process, wait_healthy
from tests.services.chromium import browser

__all__ = ["browser"]
CLIENT_KEY = "pg-browser-key-0123456789"
ADMIN_KEY = "admin-browser-key-0123456789"

FETCH = """async ([url, key, body]) => {
  try {
    const resp = await fetch(url, {
      method: body ? "POST" : "GET",
      headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json",
                "X-Stainless-OS": "Linux"},
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await resp.json();
    return {status: resp.status, request_id: resp.headers.get("x-request-id"),
            provider: resp.headers.get("x-pixgate-provider"), json};
  } catch (err) {
    return {error: String(err)};
  }
}"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    env = {"PIXGATE_API_KEYS": CLIENT_KEY, "PIXGATE_ADMIN_KEY": ADMIN_KEY}
    proc = serve_process(REPO, port, tmp_path_factory.mktemp("files"), env=env)
    try:
        wait_healthy(port)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_a_page_on_another_origin_calls_the_api_but_not_admin(browser: Any, gateway: int) -> None:
    page = browser.new_page()
    try:
        # http://localhost:P and http://127.0.0.1:P are different origins (same machine).
        page.goto(f"http://localhost:{gateway}/health")
        api = f"http://127.0.0.1:{gateway}"
        body = {"model": "demo", "prompt": "a kite", "size": "64x64", "response_format": "url"}
        result = page.evaluate(FETCH, [f"{api}/v1/images/generations", CLIENT_KEY, body])
        assert result.get("status") == 200, result
        assert result["json"]["data"][0]["url"]
        assert result["request_id"] and result["provider"] == "demo"  # exposed headers

        models = page.evaluate(FETCH, [f"{api}/v1/models/demo", CLIENT_KEY, None])
        assert models.get("status") == 200 and models["json"]["id"] == "demo", models

        admin = page.evaluate(FETCH, [f"{api}/admin/config", ADMIN_KEY, None])
        assert "error" in admin and "Failed to fetch" in admin["error"], admin
    finally:
        page.close()
