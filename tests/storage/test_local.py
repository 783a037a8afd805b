"""The zero-setup default: local disk behind the same /files and gallery as S3."""

from __future__ import annotations

import os
import time
from pathlib import Path

import aiohttp
import openai

from engine.storage.base import new_name
from engine.storage.local import LocalStorage
from tests.gateway import REPO, run_gateway

ADMIN = "admin-key-for-tests"


async def test_local_files_have_range_etag_and_a_gallery(tmp_path: Path) -> None:
    files = tmp_path / "files"
    async with run_gateway(REPO, files, {"PIXGATE_ADMIN_KEY": ADMIN}) as gw:
        client = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0)
        result = await client.images.generate(model="demo", prompt="disk", size="64x64")
        await client.close()
        url = result.data[0].url or ""
        name = url.rsplit("/", 1)[-1]
        assert (files / name).is_file()
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                body = await resp.read()
                etag = resp.headers["ETag"]
                assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(body)
            async with http.get(url, headers={"Range": "bytes=-10"}) as resp:
                assert resp.status == 206 and await resp.read() == body[-10:]
            async with http.get(url, headers={"If-None-Match": etag}) as resp:
                assert resp.status == 304
            auth = {"Authorization": f"Bearer {ADMIN}"}
            async with http.get(f"{gw.url}/admin/files", headers=auth) as resp:
                listed = (await resp.json())["data"]
            assert [i["id"] for i in listed] == [name] and listed[0]["route"] == "demo"
            async with http.delete(f"{gw.url}/admin/files/{name}", headers=auth) as resp:
                assert (await resp.json())["deleted"] == [name]
            async with http.get(url) as resp:
                assert resp.status == 404


async def test_local_sweep_removes_expired_images_and_their_metadata(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    old, new = new_name("image/png"), new_name("image/png")
    for name in (old, new):
        await store.put(name, b"\x89PNG\r\n\x1a\n", "image/png", {"route": "r"})
    past = time.time() - 7200
    os.utime(tmp_path / old, (past, past))
    os.utime(tmp_path / ".meta" / f"{old}.json", (past, past))
    assert await store.sweep(3600) == 1
    assert not store.has(old) and store.has(new)
    assert not (tmp_path / ".meta" / f"{old}.json").exists()
