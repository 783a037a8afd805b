"""Hot reload: watch, validate, swap; last good config wins; in-flight requests keep theirs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.gateway import (
    REPO,
    TEST_ADMIN_KEY,
    Gateway,
    free_port,
    run_gateway,
    serve_process,
    wait_healthy,
)

ADMIN = "admin-0123456789"
VISIBLE_WITHIN = 2.0


def make_config(root: Path, aliases: dict[str, str] | None = None) -> Path:
    (root / "providers.d").mkdir(parents=True, exist_ok=True)
    for pid in ("demo", "demo-async"):
        shutil.copy(REPO / "providers.d" / f"{pid}.yaml", root / "providers.d" / f"{pid}.yaml")
    write_routes(root, aliases or {})
    return root


def routes_doc(aliases: dict[str, str], extra_routes: dict[str, Any] | None = None) -> str:
    routes = {
        "demo": {"targets": [{"provider": "demo", "model": "demo-v1"}]},
        "demo-async": {"targets": [{"provider": "demo-async", "model": "demo-v1"}]},
        **(extra_routes or {}),
    }
    return yaml.safe_dump({"demo": True, "routes": routes, "aliases": aliases})


def write_routes(root: Path, aliases: dict[str, str], **kw: Any) -> None:
    """Write like an editor that saves by rename: never a half-written file."""
    tmp = root / ".routes.yaml.tmp"
    tmp.write_text(routes_doc(aliases, **kw))
    os.replace(tmp, root / "routes.yaml")


async def models(http: aiohttp.ClientSession, gw: Gateway) -> set[str]:
    async with http.get(f"{gw.v1}/models") as resp:
        assert resp.status == 200
        return {m["id"] for m in (await resp.json())["data"]}


async def wait_for(predicate: Any, within: float = VISIBLE_WITHIN) -> float:
    """Seconds until the async predicate held; fails after `timeout`."""
    started = time.monotonic()
    while True:
        if await predicate():
            return time.monotonic() - started
        if time.monotonic() - started > within:
            pytest.fail(f"not visible within {within}s")
        await asyncio.sleep(0.05)


async def admin(http: aiohttp.ClientSession, gw: Gateway, path: str, method: str = "GET") -> Any:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with http.request(method, f"{gw.url}{path}", headers=headers) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def watched(tmp_path: Path) -> Any:
    root = make_config(tmp_path / "config")
    env = {"PIXGATE_ADMIN_KEY": ADMIN}
    async with (
        run_gateway(root, tmp_path / "files", env, watch=True) as gw,
        aiohttp.ClientSession() as http,
    ):
        yield root, gw, http


async def test_valid_change_is_live_and_invalid_change_is_refused(watched: Any) -> None:
    root, gw, http = watched
    before = (await admin(http, gw, "/admin/config"))[1]["version"]
    write_routes(root, {"fast": "demo"})
    await wait_for(lambda: _has(http, gw, "fast"))
    cfg = (await admin(http, gw, "/admin/config"))[1]
    assert cfg["version"] != before and cfg["reloads"]["succeeded"] == 1
    assert set(cfg["files"]) == {
        "routes.yaml",
        "providers.d/demo.yaml",
        "providers.d/demo-async.yaml",
    }

    (root / "routes.yaml").write_text(
        "routes:\n  broken: {targets: [{provider: nope, model: x}]}\n"
    )
    await wait_for(lambda: _rejected(http, gw))
    cfg = (await admin(http, gw, "/admin/config"))[1]
    rejected = cfg["last_rejected"]
    assert [d["code"] for d in rejected["diagnostics"]] == ["E301"]
    assert rejected["diagnostics"][0]["line"] == 2
    assert "fast" in await models(http, gw)  # the last good config keeps serving
    async with http.post(
        f"{gw.v1}/images/generations", json={"model": "fast", "prompt": "x", "size": "64x64"}
    ) as resp:
        assert resp.status == 200


async def _has(http: aiohttp.ClientSession, gw: Gateway, name: str) -> bool:
    return name in await models(http, gw)


async def _rejected(http: aiohttp.ClientSession, gw: Gateway) -> bool:
    return (await admin(http, gw, "/admin/config"))[1]["last_rejected"] is not None


async def test_identical_content_is_a_no_op(watched: Any) -> None:
    root, gw, http = watched
    version = (await admin(http, gw, "/admin/config"))[1]["version"]
    text = (root / "routes.yaml").read_text()
    (root / "routes.yaml").write_text(text)  # same bytes, new mtime
    status, result = await admin(http, gw, "/admin/reload", "POST")
    assert status == 200 and result == {
        "status": "unchanged",
        "version": version,
        "diagnostics": [],
    }
    cfg = (await admin(http, gw, "/admin/config"))[1]
    assert cfg["version"] == version and cfg["reloads"]["succeeded"] == 0


async def test_provider_file_added_and_removed(watched: Any) -> None:
    root, gw, http = watched
    extra = (root / "providers.d" / "demo.yaml").read_text().replace("id: demo", "id: extra")
    (root / "providers.d" / "extra.yaml").write_text(extra)
    write_routes(
        root, {}, extra_routes={"extra": {"targets": [{"provider": "extra", "model": "demo-v1"}]}}
    )
    await wait_for(lambda: _has(http, gw, "extra"))
    write_routes(root, {})
    (root / "providers.d" / "extra.yaml").unlink()
    await wait_for(lambda: _gone(http, gw, "extra"))
    cfg = (await admin(http, gw, "/admin/config"))[1]
    assert "extra" not in cfg["providers"]


async def _gone(http: aiohttp.ClientSession, gw: Gateway, name: str) -> bool:
    return name not in await models(http, gw)


async def test_configmap_symlink_swap_reloads(tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    make_config(root / "..2026_01_01_00_00_00.000000001")
    (root / "..data").symlink_to("..2026_01_01_00_00_00.000000001")
    (root / "routes.yaml").symlink_to("..data/routes.yaml")
    (root / "providers.d").symlink_to("..data/providers.d")
    env = {"PIXGATE_ADMIN_KEY": ADMIN}
    async with (
        run_gateway(root, tmp_path / "f", env, watch=True) as gw,
        aiohttp.ClientSession() as http,
    ):
        for generation, alias in ((2, "second"), (3, "third")):
            # what the kubelet does: a new timestamped dir, then an atomic rename of ..data
            new = f"..2026_01_01_00_00_00.00000000{generation}"
            make_config(root / new, {alias: "demo"})
            (root / "..data_tmp").symlink_to(new)
            os.replace(root / "..data_tmp", root / "..data")
            await wait_for(lambda a=alias: _has(http, gw, a))


async def test_polling_watcher_for_file_systems_without_inotify(tmp_path: Path) -> None:
    root = make_config(tmp_path / "config")
    env = {"PIXGATE_WATCH_POLLING": "1"}
    async with (
        run_gateway(root, tmp_path / "f", env, watch=True) as gw,
        aiohttp.ClientSession() as http,
    ):
        write_routes(root, {"polled": "demo"})
        await wait_for(lambda: _has(http, gw, "polled"))


async def test_a_polling_job_finishes_on_the_config_it_started_with(watched: Any) -> None:
    root, gw, http = watched
    body = {
        "model": "demo-async",
        "prompt": "slow one",
        "size": "64x64",
        "delay": 1.0,
        "response_format": "b64_json",
    }
    started = asyncio.ensure_future(http.post(f"{gw.v1}/images/generations", json=body))
    await asyncio.sleep(0.3)  # submitted and polling now
    broken = (
        (root / "providers.d" / "demo-async.yaml")
        .read_text()
        .replace(
            "path: /v1/tasks/{{ steps.submit.task_id }}",
            "path: /v1/no-such-path/{{ steps.submit.task_id }}",
        )
    )
    (root / "providers.d" / "demo-async.yaml").write_text(broken)
    result = (await admin(http, gw, "/admin/reload", "POST"))[1]
    assert result["status"] in ("reloaded", "unchanged")  # the watcher may have been first
    resp = await started
    assert resp.status == 200, await resp.text()
    assert len((await resp.json())["data"]) == 1
    async with http.post(f"{gw.v1}/images/generations", json=body) as resp:
        assert resp.status == 502  # a new request uses the new (broken) definition


async def test_key_state_survives_a_reload(tmp_path: Path) -> None:
    from engine.runtime.routing.failures import UpstreamFailure

    root = make_config(tmp_path / "config")
    text = (
        (root / "providers.d" / "demo.yaml")
        .read_text()
        .replace(
            "auth:\n  required: false", "auth:\n  header: Authorization\n  keys: ${DEMO_API_KEYS:-}"
        )
    )
    (root / "providers.d" / "demo.yaml").write_text(text)
    env = {"DEMO_API_KEYS": "demo-key-one,demo-key-two", "PIXGATE_ADMIN_KEY": ADMIN}
    async with run_gateway(root, tmp_path / "f", env) as gw, aiohttp.ClientSession() as http:
        state = gw.app[__import__("engine.api.keys", fromlist=["STATE"]).STATE]
        snapshot = state.snapshot
        policy = snapshot.routes.policy("demo")
        state.keys.failed("demo", "demo-key-one", UpstreamFailure("bad_key", "x"), policy)
        write_routes(root, {"renamed": "demo"})
        result = (await admin(http, gw, "/admin/reload", "POST"))[1]
        assert result["status"] == "reloaded"
        _, report = await admin(http, gw, "/admin/keys")
        states = {r["key"]: r["state"] for r in report["providers"]["demo"]["keys"]}
        assert states == {"demo…one": "disabled", "demo…two": "healthy"}


def test_sighup_reloads_a_running_server(tmp_path: Path) -> None:
    root = make_config(tmp_path / "config")
    port = free_port()
    admin = TEST_ADMIN_KEY
    proc = serve_process(root, port, tmp_path / "f", env={"PIXGATE_ADMIN_KEY": admin})
    try:
        version = wait_healthy(port, admin=admin)["config_version"]
        write_routes(root, {"after-hup": "demo"})
        time.sleep(0.5)
        assert wait_healthy(port, 2, admin)["config_version"] == version  # --no-watch: not yet
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while wait_healthy(port, 2, admin)["config_version"] == version:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
