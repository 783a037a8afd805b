"""Client auth, body limits, health, and the serve-time safety checks."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import aiohttp
import openai
import pytest

from engine.cli import main
from engine.settings import Settings
from tests.e2e.providers import config_dir, single
from tests.gateway import REPO, run_gateway

CLIENT_KEY = "pg-client-key-0123456789"


async def test_client_keys_are_enforced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"PIXGATE_API_KEYS": f"other-key-000000,{CLIENT_KEY}"}
    async with run_gateway(REPO, tmp_path / "files", env) as gw:
        async with openai.AsyncOpenAI(base_url=gw.v1, api_key="wrong", max_retries=0) as sdk:
            with pytest.raises(openai.AuthenticationError) as err:
                await sdk.images.generate(model="demo", prompt="x")
            assert err.value.code == "invalid_api_key"
        async with openai.AsyncOpenAI(base_url=gw.v1, api_key=CLIENT_KEY, max_retries=0) as sdk:
            result = await sdk.images.generate(
                model="demo", prompt="x", size="64x64", response_format="b64_json"
            )
            assert result.data[0].b64_json
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gw.v1}/models") as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "missing_api_key"
            async with http.get(f"{gw.url}/health") as resp:  # health needs no key
                assert resp.status == 200
                assert await resp.json() == {"status": "ok"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert CLIENT_KEY not in logged


async def test_oversized_body_is_a_413(tmp_path: Path) -> None:
    env = {"PIXGATE_MAX_BODY_BYTES": "2000"}
    async with run_gateway(REPO, tmp_path / "files", env) as gw, aiohttp.ClientSession() as http:
        body = {"model": "demo", "prompt": "x" * 5000}
        async with http.post(f"{gw.v1}/images/generations", json=body) as resp:
            assert resp.status == 413
            error = (await resp.json())["error"]
            assert error["code"] == "request_too_large" and "2000" in error["message"]


async def test_demo_false_turns_the_demo_upstream_off(tmp_path: Path) -> None:
    config = config_dir(tmp_path, ["demo"], {**single("demo", "demo-v1", "demo"), "demo": False})
    async with (
        run_gateway(config, tmp_path / "files") as gw,
        openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk,
    ):
        with pytest.raises(openai.APIStatusError) as err:
            await sdk.images.generate(model="demo", prompt="x")
        assert err.value.status_code == 503
        assert "demo upstream is off" in err.value.message
        assert [m.id async for m in sdk.models.list()] == []


def test_serve_refuses_an_open_public_bind(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--host", "0.0.0.0", "--config", str(REPO)])
    assert code == 2
    assert "PIXGATE_API_KEYS" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "keys", "anonymous", "refused"),
    [
        ("127.0.0.1", (), False, False),
        ("::1", (), False, False),
        ("localhost", (), False, False),
        ("0.0.0.0", (), False, True),
        ("192.0.2.10", (), False, True),
        ("0.0.0.0", ("k",), False, False),
        ("0.0.0.0", (), True, False),
    ],
)
def test_exposure_rule(host: str, keys: tuple[str, ...], anonymous: bool, refused: bool) -> None:
    settings = Settings(config_dir=REPO, host=host, api_keys=keys, allow_anonymous=anonymous)
    assert (settings.exposure_problem() is not None) == refused


def test_lint_passes_on_the_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(REPO)]) == 0
    assert "ok:" in capsys.readouterr().err


async def test_overhead_header_excludes_upstream_waiting(tmp_path: Path) -> None:
    async with run_gateway(REPO, tmp_path / "files") as gw, aiohttp.ClientSession() as http:
        body = {
            "model": "demo-async",
            "prompt": "slow",
            "size": "64x64",
            "delay": 0.6,
            "response_format": "b64_json",
        }
        started = time.perf_counter()
        async with http.post(f"{gw.v1}/images/generations", json=body) as resp:
            assert resp.status == 200
            overhead = float(resp.headers["x-pixgate-overhead-ms"])
        total_ms = (time.perf_counter() - started) * 1000
        assert total_ms > 600  # the upstream took its time ...
        assert 0 < overhead < 150  # ... and the gateway's own share is reported apart from it
        async with http.get(f"{gw.url}/health") as resp:
            assert float(resp.headers["x-pixgate-overhead-ms"]) >= 0


async def test_the_demo_upstream_answers_only_the_gateway(tmp_path: Path) -> None:
    """With client keys set, /_demo must not be a way to render images without one."""
    env = {"PIXGATE_API_KEYS": CLIENT_KEY}
    async with run_gateway(REPO, tmp_path / "files", env) as gw, aiohttp.ClientSession() as http:
        body = {"prompt": "free render", "size": "64x64"}
        async with http.post(f"{gw.url}/_demo/v1/images/generations", json=body) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == "forbidden"
        headers = {"x-pixgate-internal": "guess", "Authorization": f"Bearer {CLIENT_KEY}"}
        async with http.post(
            f"{gw.url}/_demo/v1/images/generations", json=body, headers=headers
        ) as resp:
            assert resp.status == 403
        async with http.post(  # through the gateway, with a client key, it works
            f"{gw.v1}/images/generations",
            json={"model": "demo-async", **body, "delay": 0.1, "response_format": "url"},
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
