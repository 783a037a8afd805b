"""The S3 backend itself against a real SeaweedFS: objects, ranges, validators, the gallery
listing, presigned URLs, sweeping, and one clear cause per failure."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import aiohttp
import pytest

from engine.storage.base import ByteRange, NotSatisfiable, StorageError, new_name
from engine.storage.config import StorageConfig
from engine.storage.s3 import S3Storage
from tests.services.s3 import S3Server
from tests.upstreams.common import png_bytes


def config(server: S3Server, bucket: str, **extra: object) -> StorageConfig:
    return StorageConfig(
        backend="s3", bucket=bucket, prefix="p/", endpoint_url=server.endpoint,
        addressing_style="path", **extra,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_put_open_range_and_etag(s3_server: S3Server, s3_env: dict[str, str]) -> None:
    store = S3Storage(config(s3_server, s3_server.bucket()))
    data = png_bytes(64, 64)
    name = new_name("image/png")
    try:
        await store.put(name, data, "image/png", {"route": "r"})
        whole = await store.open(name)
        assert whole is not None and whole.chunks is not None
        assert b"".join([c async for c in whole.chunks]) == data
        assert whole.size == len(data) and whole.mime == "image/png" and not whole.partial

        part = await store.open(name, ByteRange(10, 19))
        assert part is not None and part.chunks is not None and part.partial
        assert (part.first, part.length, part.size) == (10, 10, len(data))
        assert b"".join([c async for c in part.chunks]) == data[10:20]

        tail = await store.open(name, ByteRange(None, 5))
        assert tail is not None and tail.chunks is not None
        assert b"".join([c async for c in tail.chunks]) == data[-5:]

        same = await store.open(name, if_none_match=whole.etag)
        assert same is not None and same.not_modified

        with pytest.raises(NotSatisfiable):
            await store.open(name, ByteRange(len(data) + 10, None))
        assert await store.open(new_name("image/png")) is None
        assert await store.read(name, len(data)) == data
        assert await store.read(name, len(data) - 1) is None  # over the limit
    finally:
        await store.close()


async def test_page_is_newest_first_with_a_cursor_and_delete(
    s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    store = S3Storage(config(s3_server, s3_server.bucket()))
    now = time.time()
    names = [new_name("image/png", now + i) for i in range(5)]  # names[4] is the newest
    try:
        for i, name in enumerate(names):
            await store.put(name, png_bytes(8, 8), "image/png", {"n": i, "prompt": "ü" * 3000})
        first, cursor = await store.page(None, 2)
        assert [m["n"] for m in first] == [4, 3] and cursor == names[3]
        assert first[0]["prompt"] == "ü" * 3000  # larger than S3 user metadata allows
        second, cursor = await store.page(cursor, 2)
        third, end = await store.page(cursor, 2)
        assert [m["n"] for m in second + third] == [2, 1, 0] and end is None

        assert await store.delete([names[0], names[1], new_name("image/png")]) == names[:2]
        rest, _ = await store.page(None, 10)
        assert [m["n"] for m in rest] == [4, 3, 2]
        assert await store.meta(names[0]) is None
    finally:
        await store.close()


async def test_presigned_and_public_urls(s3_server: S3Server, s3_env: dict[str, str]) -> None:
    bucket = s3_server.bucket()
    store = S3Storage(config(s3_server, bucket, url_mode="presigned", presign_expiry=60.0))
    data = png_bytes(16, 16)
    name = new_name("image/png")
    try:
        await store.put(name, data, "image/png", {})
        url = await store.direct_url(name)
        assert url is not None and "X-Amz-Signature=" in url
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200 and await resp.read() == data
        public = dataclasses.replace(
            store.config, url_mode="public", public_base_url="https://cdn.example"
        )
        assert await S3Storage(public).direct_url(name) == f"https://cdn.example/p/{name}"
    finally:
        await store.close()


async def test_sweep_deletes_only_expired_objects_of_ours(
    s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    store = S3Storage(config(s3_server, s3_server.bucket()))
    name = new_name("image/png")
    try:
        await store.put(name, png_bytes(8, 8), "image/png", {})
        assert await store.sweep(3600) == 0
        assert await store.sweep(0) == 1
        assert await store.open(name) is None and await store.meta(name) is None
    finally:
        await store.close()


async def test_one_clear_cause_per_failure(s3_server: S3Server, s3_env: dict[str, str]) -> None:
    async def cause(cfg: StorageConfig) -> str:
        store = S3Storage(cfg)
        try:
            await store.check(write=True)
        except StorageError as exc:
            return str(exc)
        finally:
            await store.close()
        return "ok"

    good = config(s3_server, s3_server.bucket())
    assert await cause(good) == "ok"
    assert "does not exist" in await cause(dataclasses.replace(good, bucket="no-such-bucket"))
    unreachable = dataclasses.replace(good, endpoint_url="http://127.0.0.1:9")
    assert "unreachable" in await cause(unreachable)


async def test_wrong_secret_is_named_and_never_echoed(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123")
    store = S3Storage(config(s3_server, s3_server.bucket()))
    try:
        with pytest.raises(StorageError) as info:
            await store.put(new_name("image/png"), b"x", "image/png", {})
    finally:
        await store.close()
    message = str(info.value)
    assert "credentials" in message or "access denied" in message
    assert "wrong-secret" not in message and s3_server.access_key not in message


async def test_no_credentials(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    store = S3Storage(config(s3_server, "anything"))
    try:
        with pytest.raises(StorageError, match="no AWS credentials"):
            await store.check()
    finally:
        await store.close()
