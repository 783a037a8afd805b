"""Client budgets and usage through the official openai SDK: n=4 with budget left for 2 is
refused up front with 429 insufficient_quota saying why, a failed call is not charged, the
UTC day rolls over (an injected clock), /admin/usage adds up to hand-computed numbers in JSON
and CSV, and a restart of a gateway without Redis keeps its totals (the usage file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from engine.api.metering import METER
from engine.clients.spec import digest
from tests.gateway import REPO, run_gateway

KEY = "pg-budget-client-0123456789abcdef"
OTHER = "pg-other-client-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
PRICE = 0.25  # the `demo` route's price per image in these tests
DAY = 86400.0
T0 = 1_796_000_000.0  # 2026-11-30 (a Monday), 10:13 UTC: a day and a month end soon


def config(tmp: Path, per_day: float = 1.0, per_month: float = 10.0) -> Path:
    root = tmp / "config"
    root.mkdir(exist_ok=True)
    routes = (REPO / "routes.yaml").read_text()
    anchor = "    description: Offline demo renderer (no keys, no internet)\n"
    assert anchor in routes
    priced = f"    pricing: {{per_image: {PRICE}}}\n"
    routes = routes.replace(anchor, anchor + priced, 1)
    routes = routes.replace(  # demo-async too: a failing prompt reaches an upstream there
        "    description: The demo renderer through a submit-and-poll flow\n",
        "    description: The demo renderer through a submit-and-poll flow\n" + priced,
        1,
    )
    (root / "routes.yaml").write_text(routes)
    if not (root / "providers.d").exists():
        shutil.copytree(REPO / "providers.d", root / "providers.d")
    (root / "clients.yaml").write_text(
        f"""clients:
  - name: paying
    keys: ["sha256:{digest(KEY)}"]
    budget: {{usd_per_day: {per_day}, usd_per_month: {per_month}}}
  - name: free
    keys: ["sha256:{digest(OTHER)}"]
"""
    )
    return root


def sdk(gw: Any, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.v1, api_key=key, max_retries=2, timeout=30)


async def admin_get(gw: Any, query: str, accept: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    if accept:
        headers["Accept"] = accept
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gw.url}/admin/usage?{query}", headers=headers) as resp,
    ):
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def generate(client: openai.AsyncOpenAI, n: int, **kw: Any) -> str:
    raw = await client.images.with_raw_response.generate(
        model=kw.pop("model", "demo"), prompt=kw.pop("prompt", "x"), n=n, size="64x64", **kw
    )
    assert len(raw.parse().data) == n
    return str(raw.headers["x-pixgate-cost-usd"])


async def test_budget_refuses_up_front_and_rolls_over_at_midnight(tmp_path: Path) -> None:
    root = config(tmp_path)
    async with run_gateway(root, tmp_path / "files", env={"PIXGATE_ADMIN_KEY": ADMIN}) as gw:
        now = [T0]
        gw.app[METER].clock = lambda: now[0]
        async with sdk(gw) as client, sdk(gw, OTHER) as other:
            await spend_a_day(client, other, now)
        status, _, body = await admin_get(gw, "")
        assert status == 200
        assert '"spent_today_usd":1.0' in body and '"spent_this_month_usd":1.0' in body


async def spend_a_day(
    client: openai.AsyncOpenAI, other: openai.AsyncOpenAI, now: list[float]
) -> None:
    assert await generate(client, 2) == "0.5"  # $0.50 of $1.00 spent
    with pytest.raises(openai.RateLimitError) as refused:
        await generate(client, 4)  # $1.00 more: refused before any upstream call
    err = refused.value
    assert err.status_code == 429 and err.code == "insufficient_quota"
    assert err.body["type"] == "insufficient_quota"  # type: ignore[index]
    message = err.body["message"]  # type: ignore[index]
    assert "budget of $1.00 per UTC day" in message
    assert "has spent $0.50" in message
    assert "estimated at $1.00 (4 images at $0.25)" in message
    assert "$0.50 left" in message
    assert err.response.headers["x-should-retry"] == "false"  # the SDK did not retry
    assert 0 < int(err.response.headers["Retry-After"]) <= DAY
    # A failed call is not charged: its reservation is given back.
    with pytest.raises(openai.APIError):
        await client.images.generate(model="demo-async", prompt="[demo:fail]", n=2)
    assert await generate(client, 2) == "0.5"  # exactly what was left
    with pytest.raises(openai.RateLimitError):
        await generate(client, 1)
    assert await generate(other, 4) == "1"  # another client: no budget
    now[0] = T0 + DAY  # the next UTC day (and month: December)
    assert await generate(client, 4) == "1"


async def test_month_budget_holds_across_days(tmp_path: Path) -> None:
    root = config(tmp_path, per_day=5.0, per_month=1.5)
    async with run_gateway(root, tmp_path / "files") as gw:
        now = [T0 - 5 * DAY]  # November the 25th
        gw.app[METER].clock = lambda: now[0]
        async with sdk(gw) as client:
            assert await generate(client, 4) == "1"
            now[0] += DAY
            with pytest.raises(openai.RateLimitError) as refused:
                await generate(client, 4)
            assert "budget of $1.50 per UTC month" in str(refused.value)
            assert await generate(client, 2) == "0.5"


EXPECTED_CSV = """\
day,client,model,requests,images,failures,cost_usd,upstream_seconds
2026-11-30,free,demo-v1,1,3,0,0.75,{s0}
2026-11-30,paying,-,1,0,1,0.0,{s1}
2026-11-30,paying,demo-v1,2,3,0,0.75,{s2}
2026-12-01,paying,demo-v1,1,1,0,0.25,{s3}
"""


async def test_usage_endpoint_and_a_restart_keeps_the_totals(tmp_path: Path) -> None:
    root = config(tmp_path, per_day=100, per_month=100)
    env = {"PIXGATE_ADMIN_KEY": ADMIN}
    async with run_gateway(root, tmp_path / "files", env=env) as gw:
        now = [T0]
        gw.app[METER].clock = lambda: now[0]
        async with sdk(gw) as paying, sdk(gw, OTHER) as free:
            await generate(paying, 1)
            await generate(paying, 2, model="demo-async")
            await generate(free, 3)
            with pytest.raises(openai.APIError):
                once = paying.with_options(max_retries=0)  # the SDK retries a 5xx: one request
                await once.images.generate(model="demo-async", prompt="[demo:fail]")
            now[0] += DAY
            await generate(paying, 1)
        status, kind, body = await admin_get(gw, "from=2026-11-30&to=2026-12-01&group_by=client")
        assert status == 200 and kind.startswith("application/json")
        data = json.loads(body)
        assert data["data"][0]["client"] == "free" and data["data"][0]["cost_usd"] == 0.75
        paid = data["data"][1]
        assert paid["client"] == "paying"
        assert (paid["requests"], paid["images"], paid["failures"]) == (4, 4, 1)
        assert paid["cost_usd"] == 1.0 and paid["upstream_seconds"] > 0
        assert data["totals"]["images"] == 7 and data["totals"]["cost_usd"] == 1.75
        q = "from=2026-11-30&to=2026-12-01&group_by=day,client,model&format=csv"
        status, kind, first_csv = await admin_get(gw, q)
        assert status == 200 and kind == "text/csv; charset=utf-8"
        lines = first_csv.splitlines()
        seconds = [line.rsplit(",", 1)[1] for line in lines[1:]]
        assert first_csv == EXPECTED_CSV.format(**{f"s{i}": s for i, s in enumerate(seconds)})
        # by route, for the route name of the failed request too
        status, _, by_route = await admin_get(
            gw, "from=2026-11-30&to=2026-12-01&group_by=route,provider", accept="text/csv"
        )
        assert [line.rsplit(",", 1)[0] for line in by_route.splitlines()] == [
            "route,provider,requests,images,failures,cost_usd",
            "demo,demo,3,5,0,1.25",
            "demo-async,demo-async,2,2,1,0.5",  # the failure: where it failed
        ]
        for bad, param in (
            ("from=2026-13-01", "from"),
            ("from=2026-12-02&to=2026-12-01", "from"),
            ("group_by=client,prompt", "group_by"),
            ("group_by=client,client", "group_by"),
            ("format=xml", "format"),
            ("from=2020-01-01&to=2026-12-01", "from"),
        ):
            status, _, body = await admin_get(gw, bad)
            assert status == 400, bad
            assert json.loads(body)["error"]["param"] == param
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{gw.url}/admin/usage", headers={"Authorization": f"Bearer {KEY}"}) as no,
        ):
            assert no.status == 401  # a client key is no admin key
    # A restart (same storage directory, no Redis): the file brings the totals back.
    async with run_gateway(root, tmp_path / "files", env=env) as gw:
        gw.app[METER].clock = lambda: T0 + DAY
        _, _, again = await admin_get(gw, q)
        assert again == first_csv
        _, _, body = await admin_get(gw, "")  # nor is the budget's spend forgotten
        spent = json.loads(body)["budgets"]["paying"]
        assert (spent["spent_today_usd"], spent["spent_this_month_usd"]) == (0.25, 0.25)


async def test_async_job_carries_its_cost_and_metrics_count_per_client(tmp_path: Path) -> None:
    root = config(tmp_path)
    env = {"PIXGATE_API_KEYS": "legacy-key-0123456789"}
    async with (
        run_gateway(root, tmp_path / "files", env=env) as gw,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{gw.url}/v1/images/generations?async=true",
            json={"model": "demo", "prompt": "x", "n": 3, "size": "64x64"},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as resp:
            assert resp.status == 202
            job = await resp.json()
        assert job["cost_usd"] is None
        async with http.get(
            f"{gw.url}/v1/images/jobs/{job['id']}?wait=20s",
            headers={"Authorization": f"Bearer {KEY}"},
        ) as resp:
            done = await resp.json()
        assert done["status"] == "succeeded" and done["cost_usd"] == "0.75"
        async with http.post(  # a stream: its cost comes as a closing comment line
            f"{gw.url}/v1/images/generations",
            json={"model": "demo", "prompt": "x", "n": 1, "size": "64x64", "stream": True},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as resp:
            events = await resp.text()
        assert events.count("event: image_generation.completed") == 1
        assert events.endswith("\n: x-pixgate-cost-usd: 0.25\n\n")  # the last $0.25
        async with sdk(gw, "legacy-key-0123456789") as legacy:
            await generate(legacy, 1)
        async with http.get(f"{gw.url}/metrics") as resp:
            text = await resp.text()
    labels = 'client="paying",model="demo-v1",provider="demo",route="demo"'
    assert f"pixgate_client_images_total{{{labels}}} 4.0" in text  # the job's 3 and the stream's
    assert f"pixgate_client_cost_usd_total{{{labels}}} 1.0" in text
    # keys from PIXGATE_API_KEYS are one bounded name, never the key
    assert 'pixgate_client_requests_total{client="(api-keys)",model="demo-v1"' in text
    assert "legacy-key" not in text


def test_lint_warns_about_unpriced_models_and_a_day_over_the_month(tmp_path: Path) -> None:
    from engine.config.loader import build_snapshot

    root = config(tmp_path, per_day=20.0, per_month=10.0)
    (root / "clients.yaml").write_text(
        (root / "clients.yaml").read_text()
        + f"""  - name: flux-only
    keys: ["sha256:{digest("pg-third-0123456789abcdef")}"]
    models: [flux-schnell]
    budget: {{usd_per_day: 1}}
"""
    )
    assert [
        d.format() for d in build_snapshot(root, {}).diagnostics.sorted() if d.code[:3] == "W50"
    ] == ["clients.yaml:4:13 W506 clients[0].budget: usd_per_day 20 is more than usd_per_month 10"]
    # With Together's keys its unpriced models become usable: the client that may use every
    # model is told; the one limited to (priced) flux-schnell is not.
    env = {"TOGETHER_API_KEYS": "tg-test-key-0123456789"}
    found = [d.format() for d in build_snapshot(root, env).diagnostics.sorted() if d.code == "W505"]
    assert len(found) == 1 and found[0].startswith("clients.yaml:4:13 W505 clients[0].budget")
    assert "flux-1.1-pro" in found[0]
