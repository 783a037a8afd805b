"""Degrade, never lose: S3 failing mid-request, S3 down at start-up, two replicas sharing a
bucket, and `pixgate doctor`'s one clear cause per failure. Real processes, real SeaweedFS."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from engine.storage.config import compile_storage
from engine.storage.doctor import check_storage
from tests.gateway import (
    REPO,
    Gateway,
    free_port,
    get_json,
    run_gateway,
    serve_process,
    wait_healthy,
)
from tests.services.s3 import FaultyProxy, S3Server
from tests.storage.conftest import demo_config, s3_section

ADMIN = "admin-key-for-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def admin_storage(gw: Gateway) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.get(f"{gw.url}/admin/storage") as resp,
    ):
        return dict(await resp.json())


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read()


async def test_s3_failing_mid_request_then_back(
    s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    async with FaultyProxy(s3_server.endpoint).running() as proxy:
        section = {
            **s3_section(s3_server, bucket, retry_every="100ms", upload_attempts=2),
            "endpoint_url": proxy.url,
        }
        config = demo_config(tmp_path, section)
        env = {"PIXGATE_ADMIN_KEY": ADMIN}
        async with run_gateway(config, tmp_path / "a", env) as gw:
            client = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=60)
            proxy.failing = True  # 503 SlowDown from now on
            result = await client.images.generate(model="demo", prompt="kept", size="64x64")
            await client.close()
            url = result.data[0].url or ""
            status, body = await fetch(url)
            assert status == 200 and body.startswith(b"\x89PNG")  # served from local disk
            stats = await admin_storage(gw)
            assert stats["status"] == "degraded" and stats["local_fallbacks"] == 1
            assert stats["upload_retries"] == 1 and "failing" in stats["last_error"]
            async with (
                aiohttp.ClientSession(headers=AUTH) as http,
                http.get(f"{gw.url}/admin/health") as resp,
            ):
                assert (await resp.json())["storage"] == "degraded"
            assert stats["reuploads"] == 0 and proxy.failed >= 2
            async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/metrics") as resp:
                scraped = await resp.text()
            assert 'pixgate_storage_events_total{event="local_fallback"} 1.0' in scraped
            assert "pixgate_storage_degraded 1.0" in scraped

            proxy.failing = False  # the store is back
            deadline = time.monotonic() + 30
            while (await admin_storage(gw))["reuploads"] < 1:
                assert time.monotonic() < deadline, "the kept image was not uploaded again"
                await asyncio.sleep(0.05)
            assert (await admin_storage(gw))["status"] == "ok"
            assert not list((tmp_path / "a").glob("*.png"))  # the local copy is gone
    # another replica (its own empty disk, straight to the store) serves it under the same id
    direct = demo_config(tmp_path / "direct", s3_section(s3_server, bucket))
    async with run_gateway(direct, tmp_path / "b") as other:
        status, again = await fetch(f"{other.url}/files/{url.rsplit('/', 1)[-1]}")
    assert status == 200 and again == body


async def test_s3_unreachable_at_start_up_still_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-logged-secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    section = {"backend": "s3", "bucket": "bkt1", "endpoint_url": f"http://127.0.0.1:{free_port()}",
               "upload_attempts": 1}  # fmt: skip
    config = demo_config(tmp_path, section)
    async with run_gateway(config, tmp_path / "files", {"PIXGATE_ADMIN_KEY": ADMIN}) as gw:
        records = [r for r in caplog.records if r.name == "pixgate.storage"]
        errors = [r for r in records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "unreachable" in errors[0].getMessage()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gw.url}/admin/health", headers=AUTH) as resp:
                assert (await resp.json())["storage"] == "degraded"
        client = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=60)
        b64 = await client.images.generate(
            model="demo", prompt="p", size="64x64", response_format="b64_json"
        )
        assert b64.data[0].b64_json
        url = (await client.images.generate(model="demo", prompt="p", size="64x64")).data[0].url
        await client.close()
        assert (await fetch(url or ""))[0] == 200
    assert "never-logged-secret" not in caplog.text and "AKIDEXAMPLE" not in caplog.text


def test_two_replicas_share_one_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.bucket()
    env = {
        **s3_server.env,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PIXGATE_STORAGE": f"s3://{bucket}/shared",
        "PIXGATE_S3_ENDPOINT": s3_server.endpoint,
        "PIXGATE_ADMIN_KEY": ADMIN,
    }
    ports = [free_port(), free_port()]
    procs = [
        serve_process(REPO, port, tmp_path / f"disk{i}", env=env) for i, port in enumerate(ports)
    ]
    try:
        for port in ports:
            wait_healthy(port, deadline=30)
            req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/health", headers=AUTH)
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert json.loads(resp.read())["storage"] == "ok"
        made = get_json(
            f"http://127.0.0.1:{ports[0]}/v1/images/generations",
            {"model": "demo", "prompt": "shared", "size": "64x64"},
            timeout=30,
        )
        name = made["data"][0]["url"].rsplit("/", 1)[-1]
        own = subprocess.run(
            ["curl", "-sf", "-o", "/dev/null", "-w", "%{http_code}",
             f"http://127.0.0.1:{ports[1]}/files/{name}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert own.stdout == "200"
        assert not list((tmp_path / "disk0").glob("*.png"))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            _, err = proc.communicate(timeout=15)
            text = err.decode(errors="replace")
            assert s3_server.secret_key not in text and s3_server.access_key not in text


def doctor(config: Path, env: dict[str, str]) -> tuple[int, str]:
    run_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "doctor", str(config)],
        env=run_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def test_doctor_command(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.bucket()
    rc, out = doctor(demo_config(tmp_path / "ok", s3_section(s3_server, bucket)), s3_server.env)
    assert rc == 0 and "reachable and writable" in out, out
    missing = demo_config(tmp_path / "missing", s3_section(s3_server, "no-such-bucket"))
    rc, out = doctor(missing, s3_server.env)
    assert rc == 1 and "does not exist" in out and s3_server.secret_key not in out, out


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "wrong-1"}, "rejected the credentials"),
        ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, "no AWS credentials"),
        ({"endpoint_url": "unreachable"}, "unreachable"),
        ({"bucket": "no-such-bucket"}, "does not exist"),
    ],
)
async def test_doctor_names_one_cause(
    change: dict[str, str | None],
    cause: str,
    s3_server: S3Server,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    section = s3_section(s3_server, s3_server.bucket())
    for key, value in change.items():
        if key == "endpoint_url":
            section[key] = f"http://127.0.0.1:{free_port()}"
        elif key == "bucket":
            section[key] = str(value)
        elif value is None:
            monkeypatch.delenv(key)
        else:
            monkeypatch.setenv(key, value)
    config = compile_storage(section, {}, lambda *a: pytest.fail(str(a)))
    ok, line = await check_storage(config, tmp_path)
    assert not ok and cause in line, line
    assert s3_server.secret_key not in line and "wrong-1" not in line
