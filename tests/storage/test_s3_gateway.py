"""The gateway on a real SeaweedFS: url and b64 in each url_mode, /files with Range and
ETag, the gallery, re-hosting, the image bed, traversal, and credentials kept out of sight."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml
from PIL import Image

from engine.clients.spec import digest
from engine.config.loader import build_snapshot
from engine.storage.base import is_name
from tests.e2e.providers import config_dir
from tests.gateway import Gateway, run_gateway
from tests.services.s3 import S3Server
from tests.storage.conftest import demo_config, s3_section
from tests.upstreams import modelscope as fake_ms
from tests.upstreams import serve_upstream
from tests.upstreams import siliconflow as fake_sf
from tests.upstreams.common import png_bytes

ADMIN = "admin-key-for-tests"
CLIENT_KEY = "pg-gallery-0123456789abcdefghij"
MS_KEY = "ms-" + "0123456789abcdef" * 2


def sdk(gw: Gateway, key: str = "x") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=30)


async def get(url: str, **headers: str) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=headers, allow_redirects=False) as resp,
    ):
        return resp.status, resp.headers.copy(), await resp.read()


def file_id(url: str) -> str:
    name = url.rsplit("/", 1)[-1].split("?", 1)[0]
    assert is_name(name), url
    return name


async def test_proxy_mode_streams_with_range_and_etag(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    config = demo_config(tmp_path, s3_section(s3_server, s3_server.bucket()))
    async with run_gateway(config, tmp_path / "files") as gw:
        client = sdk(gw)
        result = await client.images.generate(model="demo", prompt="a lighthouse", size="256x256")
        url = result.data[0].url or ""
        assert url.startswith(f"{gw.url}/files/")
        status, headers, body = await get(url)
        assert status == 200 and Image.open(io.BytesIO(body)).size == (256, 256)
        assert headers["Content-Length"] == str(len(body))
        assert "immutable" in headers["Cache-Control"] and headers["ETag"]
        assert not any((tmp_path / "files").glob("*.png"))  # in the bucket, not on disk

        status, headers, part = await get(url, Range="bytes=0-99")
        assert status == 206 and part == body[:100]
        assert headers["Content-Range"] == f"bytes 0-99/{len(body)}"
        status, _, _ = await get(url, Range=f"bytes={len(body) + 5}-")
        assert status == 416
        status, _, _ = await get(url, **{"If-None-Match": headers["ETag"]})
        assert status == 304

        b64 = await client.images.generate(
            model="demo", prompt="a lighthouse", size="256x256", response_format="b64_json"
        )
        assert Image.open(io.BytesIO(base64.b64decode(b64.data[0].b64_json or ""))).size == (
            256,
            256,
        )
        await client.close()


@pytest.mark.parametrize("mode", ["presigned", "public"])
async def test_direct_url_modes(
    mode: str, s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    extra: dict[str, Any] = {"url_mode": mode}
    if mode == "public":
        extra["public_base_url"] = "https://cdn.example.test"
    config = demo_config(tmp_path, s3_section(s3_server, bucket, **extra))
    async with run_gateway(config, tmp_path / "files") as gw:
        client = sdk(gw)
        result = await client.images.generate(model="demo", prompt="a fox", size="128x128")
        url = result.data[0].url or ""
        name = file_id(url)
        status, headers, _ = await get(f"{gw.url}/files/{name}")
        assert status == 302  # /files sends clients to the store itself
        if mode == "presigned":
            assert url.startswith(f"{s3_server.endpoint}/{bucket}/img/{name}?")
            assert "X-Amz-Signature=" in url
            status, _, body = await get(url)
            assert status == 200 and Image.open(io.BytesIO(body)).size == (128, 128)
            assert headers["Location"].startswith(f"{s3_server.endpoint}/{bucket}/img/{name}?")
        else:
            assert url == f"https://cdn.example.test/img/{name}"
            assert headers["Location"] == url
        b64 = await client.images.generate(
            model="demo", prompt="a fox", size="128x128", response_format="b64_json"
        )
        assert b64.data[0].b64_json
        await client.close()


async def test_gallery_lists_newest_first_and_deletes(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = demo_config(tmp_path, s3_section(s3_server, s3_server.bucket(), store_prompts=True))
    (config / "clients.yaml").write_text(
        f'clients:\n  - name: gallery-app\n    keys: ["sha256:{digest(CLIENT_KEY)}"]\n'
    )
    async with run_gateway(config, tmp_path / "files", {"PIXGATE_ADMIN_KEY": ADMIN}) as gw:
        client = sdk(gw, CLIENT_KEY)
        made = []
        for prompt in ("first", "second", "third"):
            r = await client.images.generate(model="demo", prompt=prompt, size="64x64", user="u1")
            made.append(file_id(r.data[0].url or ""))
        await client.close()
        auth = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.get(f"{gw.url}/admin/files", params={"limit": "2"}) as resp:
                page = await resp.json()
            assert [i["prompt"] for i in page["data"]] == ["third", "second"]
            first = page["data"][0]
            assert first["route"] == "demo" and first["provider"] == "demo"
            assert first["model"] == "demo-v1" and first["size"] == "64x64"
            assert first["user"] == "u1" and first["request_id"].startswith("req_")
            assert first["client"] == "gallery-app"
            assert first["bytes"] > 0 and first["created"] > 0
            params = {"limit": "2", "cursor": page["next_cursor"]}
            async with http.get(f"{gw.url}/admin/files", params=params) as resp:
                rest = await resp.json()
            assert [i["prompt"] for i in rest["data"]] == ["first"] and not rest["has_more"]

            async with http.get(f"{gw.url}/admin/files/{made[1]}") as resp:
                assert (await resp.json())["prompt"] == "second"
            async with http.delete(f"{gw.url}/admin/files/{made[1]}") as resp:
                assert (await resp.json())["deleted"] == [made[1]]
            body = {"ids": [made[0], made[2], made[1]]}
            async with http.post(f"{gw.url}/admin/files/delete", json=body) as resp:
                answer = await resp.json()
            assert answer == {"deleted": [made[0], made[2]], "not_found": [made[1]]}
            async with http.get(f"{gw.url}/admin/files") as resp:
                assert (await resp.json())["data"] == []
            outputs = []
            for path in ("/admin/storage", "/admin/config", "/admin/health"):
                async with http.get(gw.url + path) as resp:
                    outputs.append(await resp.text())
        status, _, _ = await get(f"{gw.url}/files/{made[0]}")
        assert status == 404
    secret, access = s3_env["AWS_SECRET_ACCESS_KEY"], s3_env["AWS_ACCESS_KEY_ID"]
    for text in [*outputs, caplog.text]:
        assert secret not in text and access not in text


async def test_prompts_are_not_kept_unless_asked(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    config = demo_config(tmp_path, s3_section(s3_server, s3_server.bucket()))
    async with run_gateway(config, tmp_path / "files", {"PIXGATE_ADMIN_KEY": ADMIN}) as gw:
        client = sdk(gw)
        await client.images.generate(model="demo", prompt="secret plans", size="64x64")
        await client.close()
        auth = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.get(f"{gw.url}/admin/files") as resp:
                items = (await resp.json())["data"]
        assert len(items) == 1 and "prompt" not in items[0]


@pytest.mark.parametrize(
    "path",
    [
        "/files/..%2f..%2f..%2fetc%2fpasswd",
        "/files/%2e%2e%2fconfig%2froutes.yaml",
        "/files/..%5c..%5cwindows",
        "/files/.meta",
        "/files/img%2f0000000000000aaaaaaaaaaaaaaaaaaaaaaaa.png",
        "/files/0000000000000aaaaaaaaaaaaaaaaaaaaaaaa.png%00.txt",
        "/files/../routes.yaml",
    ],
)
async def test_traversal_on_files_is_a_404(
    path: str, s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    config = demo_config(tmp_path, s3_section(s3_server, s3_server.bucket()))
    async with run_gateway(config, tmp_path / "files") as gw:
        async with aiohttp.ClientSession() as http:
            url = gw.url + path
            async with http.get(aiohttp.helpers.URL(url, encoded=True)) as resp:
                assert resp.status == 404, path
                assert "root:" not in await resp.text()


async def test_rehosting_outlives_the_upstream_url(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    routes: dict[str, Any] = {
        "routes": {
            "m": {
                "targets": [{"provider": "siliconflow", "model": "Kwai-Kolors/Kolors"}],
                "rehost": True,
            }
        },
        "storage": s3_section(s3_server, s3_server.bucket()),
    }
    app = fake_sf.create_app(expected_key="sk-test")
    async with serve_upstream(app) as base:
        env = {"SILICONFLOW_BASE_URL": f"{base}/v1", "SILICONFLOW_API_KEYS": "sk-test"}
        config = config_dir(tmp_path, ["siliconflow"], routes)
        async with run_gateway(config, tmp_path / "files", env) as gw:
            client = sdk(gw)
            result = await client.images.generate(model="m", prompt="a crane", size="512x512")
            await client.close()
            url = result.data[0].url or ""
            assert url.startswith(f"{gw.url}/files/") and not url.startswith(base)
            await app.shutdown()
    # the upstream is gone; the gateway's copy (in the bucket) is not
    async with run_gateway(config, tmp_path / "files2", env) as other:
        status, _, body = await get(f"{other.url}/files/{file_id(url)}")
    assert status == 200 and Image.open(io.BytesIO(body)).format == "PNG"


async def test_image_bed_hands_url_only_providers_a_store_url(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    routes: dict[str, Any] = {
        "routes": {
            "m": {"targets": [{"provider": "modelscope", "model": "Qwen/Qwen-Image-Edit-2511"}]}
        },
        "storage": s3_section(s3_server, bucket, url_mode="presigned"),
    }
    app = fake_ms.create_app(expected_key=MS_KEY, pending_polls=0)
    source = png_bytes(96, 96)
    async with serve_upstream(app) as base:
        env = {"MODELSCOPE_BASE_URL": f"{base}/v1", "MODELSCOPE_API_KEYS": MS_KEY}
        config = config_dir(tmp_path, ["modelscope"], routes)
        async with run_gateway(config, tmp_path / "files", env) as gw:  # no PIXGATE_PUBLIC_URL
            client = sdk(gw)
            await client.images.edit(
                model="m", image=("in.png", source, "image/png"), prompt="make it blue",
                response_format="b64_json",
            )  # fmt: skip
            await client.close()
        handed = fake_ms.state(app).calls("submit")[-1].json["image_url"]
    handed = handed[0] if isinstance(handed, list) else handed
    assert handed.startswith(f"{s3_server.endpoint}/{bucket}/img/")
    status, _, body = await get(handed)
    assert status == 200 and body == source


def test_env_shortcut_and_lint_of_the_section(tmp_path: Path) -> None:
    config = demo_config(tmp_path, None)
    env = {"PIXGATE_STORAGE": "s3://bkt/some/prefix", "PIXGATE_S3_ENDPOINT": "http://s3.test"}
    snap = build_snapshot(config, env).snapshot
    assert snap is not None
    cfg = snap.storage
    assert (cfg.backend, cfg.bucket, cfg.prefix, cfg.endpoint_url) == (
        "s3", "bkt", "some/prefix/", "http://s3.test",
    )  # fmt: skip
    assert cfg.addressing_style == "path"

    doc = yaml.safe_load((config / "routes.yaml").read_text())
    doc["storage"] = {"backend": "s3", "url_mode": "public", "ttl": "1h"}
    (config / "routes.yaml").write_text(yaml.safe_dump(doc))
    result = build_snapshot(config, {})
    lines = [d.format() for d in result.diagnostics.sorted()]
    assert result.snapshot is None
    assert any("E601" in ln and "public_base_url" in ln for ln in lines), lines
    assert any("E601" in ln and "bucket" in ln for ln in lines), lines
    assert all(ln.startswith("routes.yaml:") for ln in lines)

    doc["storage"] = {"ttl": "soon"}
    (config / "routes.yaml").write_text(yaml.safe_dump(doc))
    lines = [d.format() for d in build_snapshot(config, {}).diagnostics.sorted()]
    assert any("storage.ttl" in ln for ln in lines), lines


def test_environment_wins_over_the_section_as_for_state(tmp_path: Path) -> None:
    """PIXGATE_STORAGE / PIXGATE_S3_ENDPOINT override the fields they name; the file keeps
    the rest (the same rule as PIXGATE_REDIS_URL over `state:`)."""
    config = demo_config(tmp_path, None)
    doc = yaml.safe_load((config / "routes.yaml").read_text())
    doc["storage"] = {
        "backend": "s3", "bucket": "from-file", "prefix": "f", "region": "eu-west-1",
        "url_mode": "presigned", "ttl": "1h",
    }  # fmt: skip
    (config / "routes.yaml").write_text(yaml.safe_dump(doc))

    env = {"PIXGATE_STORAGE": "s3://from-env/e", "PIXGATE_S3_ENDPOINT": "http://minio.test"}
    snap = build_snapshot(config, env).snapshot
    assert snap is not None
    cfg = snap.storage
    assert (cfg.bucket, cfg.prefix, cfg.endpoint_url) == ("from-env", "e/", "http://minio.test")
    assert (cfg.url_mode, cfg.ttl, cfg.region) == ("presigned", 3600.0, "eu-west-1")
    assert cfg.addressing_style == "path"

    file_only = build_snapshot(config, {}).snapshot
    assert file_only is not None and file_only.storage.bucket == "from-file"

    # `local` over an s3 section: presigned URLs need s3, so the combination is refused clearly
    result = build_snapshot(config, {"PIXGATE_STORAGE": "local"})
    lines = [d.format() for d in result.diagnostics.sorted()]
    assert result.snapshot is None
    assert any("E601" in ln and "presigned" in ln for ln in lines), lines
