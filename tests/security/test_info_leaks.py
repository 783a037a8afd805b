"""What the gateway tells strangers: handed-out URLs, the Server header, /health."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.gateway import REPO, TEST_ADMIN_KEY, run_gateway

GENERATE = {"model": "demo", "prompt": "x", "size": "64x64", "response_format": "url"}


async def _url_for_host(url: str, host: str | None) -> str:
    headers = {"Host": host} if host else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/images/generations", json=GENERATE, headers=headers) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["data"][0]["url"])


async def test_defaults_leak_nothing(tmp_path: Path) -> None:
    """No PIXGATE_PUBLIC_URL, no allow-list, no admin key: what a stranger can learn."""
    async with run_gateway(REPO, tmp_path / "files") as gw, aiohttp.ClientSession() as http:
        port = gw.url.rsplit(":", 1)[1]
        # A forged Host does not decide the handed-out URLs ...
        assert (await _url_for_host(gw.url, "evil.example")).startswith(f"{gw.url}/files/")
        assert (await _url_for_host(gw.url, f"evil.example:{port}")).startswith(gw.url)
        # ... the loopback names of the bound port still do (the README quick start) ...
        local = f"http://localhost:{port}/files/"
        assert (await _url_for_host(gw.url, f"localhost:{port}")).startswith(local)
        # ... and the URL handed out serves the image.
        async with http.get(await _url_for_host(gw.url, None)) as resp:
            assert resp.status == 200 and resp.content_type == "image/png"

        for path in ("/health", "/v1/models", "/nope", "/files/x.png"):
            async with http.get(gw.url + path) as resp:
                assert resp.headers["Server"] == "pixgate", path
        reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
        writer.write(b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")  # refused before any handler runs
        await writer.drain()
        head = (await asyncio.wait_for(reader.read(4096), 5)).decode("latin-1")
        writer.close()
        assert " 400 " in head.split("\r\n", 1)[0]
        assert "Python" not in head and "aiohttp" not in head

        async with http.get(f"{gw.url}/health") as resp:
            assert await resp.json() == {"status": "ok"}
        async with http.get(f"{gw.url}/") as resp:
            assert "version" not in await resp.json()
        async with http.get(f"{gw.url}/admin/health") as resp:
            assert resp.status == 404  # no admin API without PIXGATE_ADMIN_KEY


async def test_allowed_hosts_and_admin_health(tmp_path: Path) -> None:
    env = {
        "PIXGATE_ALLOWED_HOSTS": "images.example, cdn.example:8443",
        "PIXGATE_ADMIN_KEY": TEST_ADMIN_KEY,
    }
    async with run_gateway(REPO, tmp_path / "a", env) as gw, aiohttp.ClientSession() as http:
        assert (await _url_for_host(gw.url, "images.example")).startswith("http://images.example/")
        assert (await _url_for_host(gw.url, "cdn.example:8443")).startswith(
            "http://cdn.example:8443/"
        )
        assert (await _url_for_host(gw.url, "evil.example")).startswith(gw.url)
        async with http.get(f"{gw.url}/admin/health") as resp:
            assert resp.status == 401
        auth = {"Authorization": f"Bearer {TEST_ADMIN_KEY}"}
        async with http.get(f"{gw.url}/admin/health", headers=auth) as resp:
            details = await resp.json()
            assert details["config_version"] and details["pid"]


async def test_a_public_url_decides_alone(tmp_path: Path) -> None:
    env = {"PIXGATE_PUBLIC_URL": "https://img.example/base/"}
    async with run_gateway(REPO, tmp_path / "b", env) as gw:
        for host in ("evil.example", None):
            url = await _url_for_host(gw.url, host)
            assert url.startswith("https://img.example/base/files/")
