"""/files serves only regular files the gateway wrote: no traversal, no symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from engine.storage.base import new_name
from engine.storage.local import LocalStorage
from tests.gateway import REPO, run_gateway

FILE_ID = "A" * 24 + ".png"
SECRET = b"root:x:0:0:secret-outside-storage\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    return path


async def test_symlink_named_like_a_file_id_is_not_served(tmp_path: Path, outside: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    os.symlink(outside, files / FILE_ID)
    async with run_gateway(REPO, files) as gw, aiohttp.ClientSession() as http:
        for method in ("GET", "HEAD"):
            async with http.request(method, f"{gw.url}/files/{FILE_ID}") as resp:
                body = await resp.read()
                assert resp.status == 404, (method, resp.status)
                assert SECRET not in body


async def test_regular_file_is_served_and_traversal_is_not(tmp_path: Path) -> None:
    files = tmp_path / "files"
    storage = LocalStorage(files)
    name = new_name("image/png")
    await storage.put(name, b"\x89PNG\r\n\x1a\n" + b"x" * 300_000, "image/png", {})
    (tmp_path / "secret.png").write_bytes(SECRET)
    async with run_gateway(REPO, files) as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.url}/files/{name}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/png"
            assert int(resp.headers["Content-Length"]) == 300_008
            assert (await resp.read()).startswith(b"\x89PNG")
        for path in ("..%2Fsecret.png", "%2e%2e%2fsecret.png", "..%5Csecret.png", "secret.png"):
            async with http.get(f"{gw.url}/files/{path}") as resp:
                assert resp.status == 404, path
                assert SECRET not in await resp.read()


async def test_storage_read_and_path_refuse_symlinks(tmp_path: Path, outside: Path) -> None:
    storage = LocalStorage(tmp_path)
    os.symlink(outside, tmp_path / FILE_ID)
    assert not storage.has(FILE_ID)
    assert storage.open_file(FILE_ID) is None
    assert await storage.open(FILE_ID) is None
    assert await storage.read(FILE_ID, 1 << 20) is None
