"""Failover, key health, circuit breaking and relay mode over real fake upstreams."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from engine.config.loader import build_snapshot
from tests.e2e.providers import config_dir
from tests.gateway import REPO, Gateway, run_gateway
from tests.upstreams import modelscope as fake_ms
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream
from tests.upstreams import siliconflow as fake_sf

KEY_A = "sk-proj-" + "A" * 40
KEY_B = "sk-proj-" + "B" * 40
ADMIN = "admin-key-0123456789"
GATEWAY_KEY = "gw-0123456789"


async def admin_keys(gw: Gateway) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gw.url}/admin/keys", headers=headers) as r,
    ):
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


@pytest.fixture
async def openai_pair(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Any, openai.AsyncOpenAI]]:
    app = fake_openai.create_app()
    async with serve_upstream(app) as base:
        env = {
            "OPENAI_BASE_URL": f"{base}/v1",
            "OPENAI_API_KEYS": f"{KEY_A},{KEY_B}",
            "PIXGATE_ADMIN_KEY": ADMIN,
        }
        routes = {
            "routes": {"m": {"targets": [{"provider": "openai", "model": "gpt-image-1"}]}},
            "providers": {"openai": {"circuit_breaker": {"failures": 50}}},
        }
        async with run_gateway(config_dir(tmp_path, ["openai"], routes), tmp_path / "f", env) as gw:
            async with openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk:
                yield gw, app, sdk


async def test_429_cools_the_key_for_retry_after_and_uses_the_other(openai_pair: Any) -> None:
    gw, app, sdk = openai_pair
    fake = fake_openai.state(app)
    fake.fail_next("rate_limit")
    raw = await sdk.images.with_raw_response.generate(model="m", prompt="x")
    assert raw.headers["x-pixgate-attempts"] == "2"
    limited = fake.requests[0].headers["authorization"].removeprefix("Bearer ")
    other = KEY_B if limited == KEY_A else KEY_A
    rows = {r["key"]: r for r in (await admin_keys(gw))["providers"]["openai"]["keys"]}
    cooled = rows[limited[:4] + "…" + limited[-3:]]
    assert cooled["state"] == "cooling_down" and 6 < cooled["cooldown_remaining_s"] <= 7
    assert cooled["last_error"] == "rate_limited"
    for _ in range(3):  # while it cools, every request goes to the other key
        await sdk.images.generate(model="m", prompt="x")
    assert {r.headers["authorization"] for r in fake.requests[2:]} == {f"Bearer {other}"}


async def test_401_takes_the_key_out_of_rotation(openai_pair: Any) -> None:
    gw, app, sdk = openai_pair
    fake = fake_openai.state(app)
    fake.fail_next("bad_key")
    await sdk.images.generate(model="m", prompt="x")
    rejected = fake.requests[0].headers["authorization"]
    for _ in range(3):
        await sdk.images.generate(model="m", prompt="x")
    assert all(r.headers["authorization"] != rejected for r in fake.requests[2:])
    states = sorted(r["state"] for r in (await admin_keys(gw))["providers"]["openai"]["keys"])
    assert states == ["disabled", "healthy"]


async def test_every_key_rate_limited_is_a_429_with_retry_after(openai_pair: Any) -> None:
    _gw, app, sdk = openai_pair
    fake_openai.state(app).fail_next("rate_limit", times=2)
    with pytest.raises(openai.RateLimitError) as err:
        await sdk.images.generate(model="m", prompt="x")
    assert err.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.RateLimitError) as err:  # both keys now cooling: no upstream call
        await sdk.images.generate(model="m", prompt="x")
    assert len(fake_openai.state(app).requests) == 2
    assert 5 <= int(err.value.response.headers["retry-after"]) <= 7


async def test_admin_api_needs_its_own_key(openai_pair: Any) -> None:
    gw, _app, _sdk = openai_pair
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with http.get(f"{gw.url}/admin/keys", headers=headers) as resp:
                assert resp.status == 401
    report = await admin_keys(gw)
    assert KEY_A not in repr(report) and KEY_B not in repr(report)


@contextlib.asynccontextmanager
async def openai_then_siliconflow(
    tmp_path: Path, route: dict[str, Any], policies: dict[str, Any] | None = None
) -> AsyncIterator[tuple[web.Application, openai.AsyncOpenAI]]:
    """Route `m`: openai first (priority 1), then siliconflow, each on its own fake upstream;
    yields the openai fake (to script failures) and an SDK client on the gateway."""
    first, second = fake_openai.create_app(), fake_sf.create_app()
    async with serve_upstream(first) as b1, serve_upstream(second) as b2:
        env = {
            "OPENAI_BASE_URL": f"{b1}/v1",
            "OPENAI_API_KEYS": KEY_A,
            "SILICONFLOW_BASE_URL": f"{b2}/v1",
            "SILICONFLOW_API_KEYS": "sf",
        }
        targets = [
            {"provider": "openai", "model": "gpt-image-1", "priority": 1},
            {"provider": "siliconflow", "model": "Kwai-Kolors/Kolors"},
        ]
        routes = {"routes": {"m": {**route, "targets": targets}}, "providers": policies or {}}
        config = config_dir(tmp_path, ["openai", "siliconflow"], routes)
        async with (
            run_gateway(config, tmp_path / "f", env) as gw,
            openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk,
        ):
            yield first, sdk


async def test_circuit_opens_and_traffic_moves_to_the_next_target(tmp_path: Path) -> None:
    breaker = {"openai": {"circuit_breaker": {"failures": 2, "cooldown": "1h"}}}
    async with openai_then_siliconflow(tmp_path, {}, breaker) as (first, sdk):
        fake_openai.state(first).fail_next("server_error", times=2)
        for _ in range(2):
            raw = await sdk.images.with_raw_response.generate(model="m", prompt="x")
            assert raw.headers["x-pixgate-provider"] == "siliconflow"
        raw = await sdk.images.with_raw_response.generate(model="m", prompt="x")
        assert raw.headers["x-pixgate-provider"] == "siliconflow"
        assert raw.headers["x-pixgate-attempts"] == "1"  # openai skipped: circuit open
        assert len(fake_openai.state(first).requests) == 2


async def test_failover_on_content_policy_when_the_route_says_so(tmp_path: Path) -> None:
    route = {"failover_on": ["content_policy"]}
    async with openai_then_siliconflow(tmp_path, route) as (first, sdk):
        fake_openai.state(first).fail_next("content_policy")
        raw = await sdk.images.with_raw_response.generate(model="m", prompt="x")
        assert raw.headers["x-pixgate-provider"] == "siliconflow"


async def test_keys_file_feeds_the_pool(tmp_path: Path) -> None:
    app = fake_openai.create_app(expected_key=KEY_B)
    secret = tmp_path / "openai-keys"
    secret.write_text(f"# mounted secret\n\n{KEY_B}\n")
    async with serve_upstream(app) as base:
        routes = {
            "routes": {"m": {"targets": [{"provider": "openai", "model": "gpt-image-1"}]}},
            "providers": {"openai": {"keys_file": str(secret)}},
        }
        env = {"OPENAI_BASE_URL": f"{base}/v1"}
        async with run_gateway(config_dir(tmp_path, ["openai"], routes), tmp_path / "f", env) as gw:
            async with openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk:
                result = await sdk.images.generate(model="m", prompt="x")
                assert result.data


RELAY_KEYS = {
    "huggingface-space": "hf_" + "a1B2" * 9,
    "modelscope": "ms-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    "pollinations": "sk_" + "Zx9" * 8,
    "doubao": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    "gitee": "AbCdEf0123456789AbCdEf0123456789Ab",
    "openai": "sk-proj-" + "Q1w2E3r4" * 6,
}


@pytest.mark.parametrize("provider", sorted(RELAY_KEYS))
def test_shipped_key_patterns_recognise_each_format(provider: str) -> None:
    snap = build_snapshot(REPO, {}).snapshot
    assert snap is not None
    found = snap.relay_provider(RELAY_KEYS[provider])
    assert found is not None and found.id == provider
    assert snap.relay_provider("pk_" + "Zx9" * 8).id == "pollinations"  # type: ignore[union-attr]
    assert snap.relay_provider("not-a-provider-key") is None


async def test_relay_sends_the_clients_key_to_its_provider_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = RELAY_KEYS["modelscope"]
    ms, sf = fake_ms.create_app(expected_key=key, pending_polls=0), fake_sf.create_app()
    async with serve_upstream(ms) as b1, serve_upstream(sf) as b2:
        env = {
            "MODELSCOPE_BASE_URL": f"{b1}/v1",
            "SILICONFLOW_BASE_URL": f"{b2}/v1",
            "SILICONFLOW_API_KEYS": "sf-pool",
            "PIXGATE_API_KEYS": GATEWAY_KEY,
            "PIXGATE_ADMIN_KEY": ADMIN,
        }
        routes = {
            "relay": True,
            "routes": {
                "qwen": {
                    "targets": [
                        {"provider": "siliconflow", "model": "Qwen/Qwen-Image", "priority": 1},
                        {"provider": "modelscope", "model": "Qwen/Qwen-Image"},
                    ]
                }
            },
        }
        cfg = config_dir(tmp_path, ["modelscope", "siliconflow"], routes)
        async with run_gateway(cfg, tmp_path / "f", env) as gw:
            async with openai.AsyncOpenAI(base_url=gw.v1, api_key=key, max_retries=0) as sdk:
                raw = await sdk.images.with_raw_response.generate(model="qwen", prompt="x")
                assert raw.headers["x-pixgate-provider"] == "modelscope"
            assert fake_sf.state(sf).requests == []
            assert {r.headers["authorization"] for r in fake_ms.state(ms).requests} == {
                f"Bearer {key}"
            }
            # backend mode with the gateway key still works, and uses the pool
            async with openai.AsyncOpenAI(
                base_url=gw.v1, api_key=GATEWAY_KEY, max_retries=0
            ) as sdk:
                raw = await sdk.images.with_raw_response.generate(model="qwen", prompt="x")
                assert raw.headers["x-pixgate-provider"] == "siliconflow"
            async with openai.AsyncOpenAI(base_url=gw.v1, api_key="neither", max_retries=0) as sdk:
                with pytest.raises(openai.AuthenticationError):
                    await sdk.images.generate(model="qwen", prompt="x")
            report = await admin_keys(gw)
    assert key not in repr(report)
    assert key not in "\n".join(r.getMessage() for r in caplog.records)


async def test_relay_key_for_a_provider_the_route_lacks_is_a_400(tmp_path: Path) -> None:
    routes = {
        "relay": True,
        "routes": {"m": {"targets": [{"provider": "siliconflow", "model": "Kwai-Kolors/Kolors"}]}},
    }
    cfg = config_dir(tmp_path, ["siliconflow", "modelscope"], routes)
    async with run_gateway(cfg, tmp_path / "f", {"SILICONFLOW_API_KEYS": "x"}) as gw:
        async with openai.AsyncOpenAI(
            base_url=gw.v1, api_key=RELAY_KEYS["modelscope"], max_retries=0
        ) as sdk:
            with pytest.raises(openai.BadRequestError) as err:
                await sdk.images.generate(model="m", prompt="x")
            assert "modelscope" in err.value.message


async def test_admin_reprobe_brings_a_disabled_key_back_now(openai_pair: Any) -> None:
    gw, app, sdk = openai_pair
    fake = fake_openai.state(app)
    fake.fail_next("bad_key")
    await sdk.images.generate(model="m", prompt="x")
    rejected = fake.requests[0].headers["authorization"].removeprefix("Bearer ")
    rows = (await admin_keys(gw))["providers"]["openai"]["keys"]
    index = next(i for i, r in enumerate(rows) if r["state"] == "disabled")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as http:
        for bad in ({"provider": "openai", "index": 9}, {"provider": "nope", "index": 0}):
            async with http.post(f"{gw.url}/admin/keys/reprobe", json=bad, headers=headers) as r:
                assert r.status == 404
        async with http.post(f"{gw.url}/admin/keys/reprobe", json={}, headers=headers) as r:
            assert r.status == 400
        body = {"provider": "openai", "index": index}
        async with http.post(f"{gw.url}/admin/keys/reprobe", json=body, headers=headers) as r:
            assert r.status == 200 and rejected not in await r.text()
    states = [r["state"] for r in (await admin_keys(gw))["providers"]["openai"]["keys"]]
    assert states[index] == "probing"  # no longer disabled: the next requests may try it
    before = len(fake.requests)
    for _ in range(4):
        await sdk.images.generate(model="m", prompt="x")
    used = {r.headers["authorization"] for r in fake.requests[before:]}
    assert f"Bearer {rejected}" in used


@pytest.mark.parametrize("any_model", [False, True])
async def test_relay_client_names_its_providers_own_model_ids(
    tmp_path: Path, any_model: bool
) -> None:
    """A client bringing a ModelScope key may ask for `Tongyi-MAI/Z-Image-Turbo` as it would
    upstream, though no route has that name; an id the file does not list only when the file
    has `any_model`."""
    key = RELAY_KEYS["modelscope"]
    ms = fake_ms.create_app(expected_key=key, pending_polls=0)
    async with serve_upstream(ms) as base:
        routes = {
            "relay": True,
            "direct_models": False,
            "routes": {
                "qwen": {"targets": [{"provider": "modelscope", "model": "Qwen/Qwen-Image"}]}
            },
        }
        cfg = config_dir(tmp_path, ["modelscope"], routes)
        if any_model:
            source = cfg / "providers.d" / "modelscope.yaml"
            source.write_text(source.read_text() + "any_model: Tongyi-MAI/Z-Image-Turbo\n")
        env = {"MODELSCOPE_BASE_URL": f"{base}/v1", "PIXGATE_API_KEYS": GATEWAY_KEY}
        async with (
            run_gateway(cfg, tmp_path / "f", env) as gw,
            openai.AsyncOpenAI(base_url=gw.v1, api_key=key, max_retries=0) as sdk,
        ):
            raw = await sdk.images.with_raw_response.generate(
                model="Tongyi-MAI/Z-Image-Turbo", prompt="x", size="512x512"
            )
            assert raw.headers["x-pixgate-provider"] == "modelscope"
            assert fake_ms.state(ms).requests[0].json["model"] == "Tongyi-MAI/Z-Image-Turbo"
            unlisted = sdk.images.generate(model="someone/new-model", prompt="x", size="512x512")
            if any_model:
                assert (await unlisted).data
                assert fake_ms.state(ms).requests[-2].json["model"] == "someone/new-model"
            else:
                with pytest.raises(openai.NotFoundError):
                    await unlisted
            async with openai.AsyncOpenAI(  # a gateway key is no relay: routes only
                base_url=gw.v1, api_key=GATEWAY_KEY, max_retries=0
            ) as backend:
                with pytest.raises(openai.NotFoundError):
                    await backend.images.generate(model="Tongyi-MAI/Z-Image-Turbo", prompt="x")


def test_any_model_must_name_a_listed_model(tmp_path: Path) -> None:
    cfg = config_dir(tmp_path, ["modelscope"], {"routes": {"r": {"targets": [
        {"provider": "modelscope", "model": "Qwen/Qwen-Image"}]}}})  # fmt: skip
    source = cfg / "providers.d" / "modelscope.yaml"
    source.write_text(source.read_text() + "any_model: nope\n")
    lines = [d.format() for d in build_snapshot(cfg, {}).diagnostics.sorted()]
    assert any("E101 any_model: 'nope' is not one of this file's models" in x for x in lines)
