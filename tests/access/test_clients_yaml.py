"""clients.yaml: keys as digests, allowed models, per-client limits; lint with positions;
`pixgate key new`; a removed client is refused after the reload."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import openai
import pytest

from engine.clients.spec import digest
from engine.config.loader import build_snapshot
from tests.gateway import REPO, run_gateway

KEY_A = "pg-client-a-0123456789abcdefghij"
KEY_B = "pg-client-b-0123456789abcdefghij"
KEY_SECRET = "pg-from-a-secret-0123456789abcd"


def config(tmp: Path, clients: str) -> Path:
    root = tmp / "config"
    root.mkdir(exist_ok=True)
    shutil.copy(REPO / "routes.yaml", root / "routes.yaml")
    if not (root / "providers.d").exists():
        shutil.copytree(REPO / "providers.d", root / "providers.d")
    (root / "clients.yaml").write_text(clients)
    return root


CLIENTS = f"""\
clients:
  - name: app-a
    keys: ["sha256:{digest(KEY_A)}"]
    models: [demo, "demo-*"]
    limits: {{max_n: 2, max_pixels: 1048576, rpm: 3}}
    tags: [team-a]
  - name: app-b
    keys: ["sha256:{digest(KEY_B)}", "${{APP_B_KEY}}"]
"""


def diags(root: Path, env: dict[str, str] | None = None) -> list[str]:
    return [d.format() for d in build_snapshot(root, env or {}).diagnostics.sorted()]


def test_lint_points_at_a_digest_typo_a_clear_key_and_a_duplicate(tmp_path: Path) -> None:
    good = f"sha256:{digest(KEY_A)}"
    root = config(
        tmp_path,
        f"""clients:
  - name: a
    keys: ["{good[:-1]}"]
  - name: b
    keys: ["{KEY_A}"]
  - name: c
    keys: ["{good}"]
  - name: d
    keys: ["{good}"]
    models: [no-such-model-*]
""",
    )
    lines = diags(root)
    assert any(line.startswith("clients.yaml:3:12 E504 clients[0].keys[0]") for line in lines)
    assert any(line.startswith("clients.yaml:5:12 E504 clients[1].keys[0]") for line in lines)
    assert any("clients.yaml:9:12 E503" in line and "client 'c'" in line for line in lines)
    assert any("clients.yaml:10:14 W502" in line for line in lines)
    assert not any(KEY_A in line for line in lines)  # a clear key is never echoed
    assert build_snapshot(root, {}).snapshot is None


def test_an_env_reference_may_bring_a_clear_key_from_a_secret(tmp_path: Path) -> None:
    root = config(tmp_path, CLIENTS)
    snap = build_snapshot(root, {"APP_B_KEY": KEY_SECRET}).snapshot
    assert snap is not None
    found = snap.clients.find(KEY_SECRET)
    assert found is not None and found.name == "app-b"
    assert snap.clients.find(KEY_SECRET + "x") is None
    assert KEY_SECRET not in repr(snap.clients)  # only its digest is kept


def test_key_new_prints_a_key_and_its_digest() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "engine", "key", "new"], capture_output=True, text=True, check=True
    ).stdout
    key = out.split("key:")[1].split()[0]
    assert f"sha256:{digest(key)}" in out and len(key) > 40


async def test_clients_keys_models_and_limits_through_the_sdk(tmp_path: Path) -> None:
    root = config(tmp_path, CLIENTS)
    env = {"APP_B_KEY": KEY_SECRET, "PIXGATE_API_KEYS": "legacy-key-0123456789"}
    async with run_gateway(root, tmp_path / "files", env=env) as gw:

        def client(key: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=gw.v1, api_key=key, max_retries=0)

        a = client(KEY_A)
        ok = await a.images.with_raw_response.generate(model="demo", prompt="x", size="64x64")
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.headers["x-ratelimit-remaining-requests"] == "2"
        with pytest.raises(openai.AuthenticationError):
            await client("pg-unknown-key-000000000000000").images.generate(model="demo", prompt="x")
        # The model exists, this client may not use it: 403, not 404.
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await a.images.generate(model="flux-schnell", prompt="x")
        assert denied.value.body["code"] == "model_not_allowed"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as too_many:
            await a.images.generate(model="demo", prompt="x", n=3)
        assert "max_n of 2" in str(too_many.value)
        with pytest.raises(openai.BadRequestError):
            await a.images.generate(model="demo", prompt="x", size="2048x2048")
        with pytest.raises(openai.RateLimitError) as limited:
            for _ in range(3):
                await a.images.generate(model="demo", prompt="x", size="64x64")
        headers = limited.value.response.headers
        assert int(headers["Retry-After"]) >= 1 and headers["x-ratelimit-remaining-requests"] == "0"
        # app-b: every model, no limits; its ${ENV} key works; PIXGATE_API_KEYS still works.
        b = client(KEY_SECRET)
        assert (await b.images.generate(model="demo-async", prompt="x", size="64x64")).data
        legacy = client("legacy-key-0123456789")
        assert (await legacy.images.generate(model="demo", prompt="x", size="64x64")).data


async def test_concurrency_limit_and_a_removed_client(tmp_path: Path) -> None:
    clients = f"""clients:
  - name: slow
    keys: ["sha256:{digest(KEY_A)}"]
    limits: {{concurrent: 1}}
"""
    root = config(tmp_path, clients)
    env = {"PIXGATE_ADMIN_KEY": "admin-key-0123456789"}
    async with run_gateway(root, tmp_path / "files", env=env) as gw:
        a = openai.AsyncOpenAI(base_url=gw.v1, api_key=KEY_A, max_retries=0)
        first = asyncio.create_task(
            a.images.generate(model="demo-async", prompt="x", size="64x64", extra_body={"delay": 2})
        )
        await asyncio.sleep(0.5)
        with pytest.raises(openai.RateLimitError):
            await a.images.generate(model="demo", prompt="x", size="64x64")
        assert (await first).data
        assert (await a.images.generate(model="demo", prompt="x", size="64x64")).data  # freed
        (root / "clients.yaml").write_text(  # slow is gone, another client stays
            f'clients:\n  - name: other\n    keys: ["sha256:{digest(KEY_B)}"]\n'
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{gw.url}/admin/reload", headers={"Authorization": "Bearer admin-key-0123456789"}
            ) as resp,
        ):
            assert (await resp.json())["status"] == "reloaded"
        with pytest.raises(openai.AuthenticationError):  # removed: refused from this reload on
            await a.images.generate(model="demo", prompt="x", size="64x64")
