"""GET /metrics: Prometheus text that moves with traffic, bounded labels, access control,
a separate listen address, and the sum over `--workers N`."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway import REPO, free_port, get_json, run_gateway, serve_process, wait_healthy

GEN = "/v1/images/generations"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def total(text: str, name: str, **labels: str) -> float:
    """Sum over every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and want <= ls)


async def scrape(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_metrics_move_with_requests_and_keep_labels_bounded(tmp_path: Path) -> None:
    async with run_gateway(REPO, tmp_path / "files") as gw:
        async with openai.AsyncOpenAI(base_url=gw.v1, api_key="unused", max_retries=0) as client:
            status, before = await scrape(f"{gw.url}/metrics")
            assert status == 200
            assert value(before, "pixgate_requests_total", endpoint=GEN, route="demo",
                         model="demo", status="200") == 0  # fmt: skip
            for _ in range(3):
                await client.images.generate(model="demo", prompt="a fox", size="64x64")
            with pytest.raises(openai.NotFoundError):
                await client.images.generate(model="no-such-model-<script>", prompt="x")
            _, text = await scrape(f"{gw.url}/metrics")
    assert value(text, "pixgate_requests_total", endpoint=GEN, route="demo", model="demo",
                 status="200") == 3  # fmt: skip
    # A model no route knows is counted, under "other": a client cannot mint label values.
    assert value(text, "pixgate_requests_total", endpoint=GEN, route="other", model="other",
                 status="404") == 1  # fmt: skip
    assert "no-such-model" not in text
    assert value(text, "pixgate_upstream_attempts_total", provider="demo", outcome="success") == 3
    assert value(text, "pixgate_upstream_latency_seconds_count", provider="demo") == 3
    assert value(text, "pixgate_images_generated_total", provider="demo") == 3
    assert value(text, "pixgate_request_duration_seconds_count", endpoint=GEN) == 4
    assert value(text, "pixgate_overhead_seconds_count", endpoint=GEN) == 4
    assert value(text, "pixgate_response_bytes_total", endpoint=GEN) > 0
    assert value(text, "pixgate_in_flight_requests") == 0
    assert value(text, "pixgate_circuit_state", provider="demo", state="closed") == 1
    assert total(text, "pixgate_config_info") == 1
    assert value(text, "pixgate_config_reloads", result="rejected") == 0


async def test_requests_answered_before_routing_keep_their_endpoint_label(
    tmp_path: Path,
) -> None:
    """The gateway's handler runs around aiohttp's routing, not as an app middleware (none
    is set: aiohttp would run a chain of its own per request). A key refused before routing
    is still counted under its route's endpoint; a path or method no route has under
    "unmatched", as an OpenAI error."""
    env = {"PIXGATE_API_KEYS": "sk-right-key-0123456789"}
    async with run_gateway(REPO, tmp_path / "files", env=env) as gw:
        assert not gw.app.middlewares
        async with openai.AsyncOpenAI(base_url=gw.v1, api_key="wrong", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                await client.images.generate(model="demo", prompt="a fox")
        headers = {"Authorization": f"Bearer {env['PIXGATE_API_KEYS']}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(f"{gw.url}/v1/no-such-path") as resp:
                assert resp.status == 404
                assert (await resp.json())["error"]["code"] == "not_found"
            async with http.get(f"{gw.url}{GEN}") as resp:
                assert resp.status == 405
                assert (await resp.json())["error"]["code"] == "method_not_allowed"
        _, text = await scrape(f"{gw.url}/metrics")
    assert value(text, "pixgate_requests_total", endpoint=GEN, route="-", model="-",
                 status="401") == 1  # fmt: skip
    assert value(text, "pixgate_requests_total", endpoint="unmatched", route="-", model="-",
                 status="404") == 1  # fmt: skip
    assert value(text, "pixgate_requests_total", endpoint="unmatched", route="-", model="-",
                 status="405") == 1  # fmt: skip


async def test_upstream_failures_are_counted_by_kind(tmp_path: Path) -> None:
    async with run_gateway(REPO, tmp_path / "files") as gw:
        async with openai.AsyncOpenAI(base_url=gw.v1, api_key="unused", max_retries=0) as client:
            # The demo upstream fails a task whose prompt carries its marker.
            with pytest.raises(openai.APIStatusError):
                await client.images.generate(model="demo-async", prompt="[demo:fail] x")
            _, text = await scrape(f"{gw.url}/metrics")
    attempts = total(text, "pixgate_upstream_attempts_total", provider="demo-async")
    success = value(
        text, "pixgate_upstream_attempts_total", provider="demo-async", outcome="success"
    )
    assert attempts >= 1 and success == 0
    assert value(text, "pixgate_polling_jobs") == 0  # the polling attempt has ended


async def test_metrics_key_is_required_when_set(tmp_path: Path) -> None:
    env = {"PIXGATE_METRICS_KEY": "scrape-secret", "PIXGATE_ADMIN_KEY": "admin-secret"}
    async with run_gateway(REPO, tmp_path / "files", env=env) as gw:
        assert (await scrape(f"{gw.url}/metrics"))[0] == 401
        assert (await scrape(f"{gw.url}/metrics", "wrong"))[0] == 401
        status, text = await scrape(f"{gw.url}/metrics", "scrape-secret")
        assert status == 200 and "pixgate_requests_total" in text
        assert (await scrape(f"{gw.url}/metrics", "admin-secret"))[0] == 200
        assert "scrape-secret" not in text and "admin-secret" not in text


async def test_separate_listen_address(tmp_path: Path) -> None:
    port = free_port()
    env = {"PIXGATE_METRICS_LISTEN": f"127.0.0.1:{port}"}
    async with run_gateway(REPO, tmp_path / "files", env=env) as gw:
        assert (await scrape(f"{gw.url}/metrics"))[0] == 404  # not on the API port
        status, text = await scrape(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "pixgate_config_info" in text


def test_workers_report_the_sum(tmp_path: Path) -> None:
    port = free_port()
    proc = serve_process(REPO, port, tmp_path / "files", "--workers", "2")
    try:
        wait_healthy(port)
        body = {"model": "demo", "prompt": "x", "size": "64x64", "response_format": "b64_json"}
        for _ in range(8):
            assert get_json(f"http://127.0.0.1:{port}{GEN}", body)["data"]
        seen = set()
        for _ in range(6):  # whichever worker answers the scrape, it reports the fleet's sum
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            seen.add(value(text, "pixgate_requests_total", endpoint=GEN, route="demo",
                           model="demo", status="200"))  # fmt: skip
        assert seen == {8.0}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_bad_listen_address_is_refused_cleanly(tmp_path: Path) -> None:
    from engine.settings import Settings

    with pytest.raises(ValueError, match="host:port"):
        Settings.from_env({"PIXGATE_METRICS_LISTEN": "nonsense"})


async def test_dashboard_uses_only_metrics_the_gateway_exports(tmp_path: Path) -> None:
    """deploy/grafana/pixgate.json: every metric a panel queries is one /metrics serves."""
    import json
    import re

    dashboard = json.loads((REPO / "deploy" / "grafana" / "pixgate.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(pixgate_[a-z_]+)", e)}
    async with run_gateway(REPO, tmp_path / "files") as gw:
        async with openai.AsyncOpenAI(base_url=gw.v1, api_key="unused", max_retries=0) as client:
            await client.images.generate(model="demo", prompt="x", size="64x64")
            _, text = await scrape(f"{gw.url}/metrics")
    exported = {name for name, _ in samples(text)}
    families = list(text_string_to_metric_families(text))
    exported |= {f.name for f in families}  # declared, no samples yet
    exported |= {f"{f.name}_total" for f in families if f.type == "counter"}
    assert used and used <= exported, used - exported
