"""Async image jobs and Idempotency-Key, through the official SDK against a real gateway and a
fake submit-and-poll upstream that counts what it receives."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import standardwebhooks
from aiohttp import web

from tests.e2e.jobs_upstream import Env, jobs_env
from tests.upstreams import serve_upstream

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
async def env(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with jobs_env(tmp_path, getattr(request, "param", {})) as found:
        yield found


async def _submit_async(sdk: openai.AsyncOpenAI, **headers: str) -> Any:
    raw = await sdk.images.with_raw_response.generate(
        model="slow", prompt="a fox", extra_headers={**ASYNC, **headers}
    )
    return raw


async def test_async_submit_then_poll_until_succeeded(env: Env) -> None:
    raw = await _submit_async(env.a)
    assert raw.http_response.status_code == 202
    job = raw.http_response.json()
    assert job["object"] == "image.job" and job["status"] in ("queued", "running")
    assert job["model"] == "slow" and len(job["id"]) > 30
    assert raw.headers["location"] == f"/v1/images/jobs/{job['id']}"
    assert "owner" not in job
    url = env.gw.url + raw.headers["location"]
    async with env.http.get(url) as resp:
        assert (await resp.json())["status"] == "running"
    env.up.done.set()
    async with env.http.get(url, params={"wait": "10s"}) as resp:
        done = await resp.json()
    assert done["status"] == "succeeded", done
    assert done["result"]["data"][0]["url"] == "https://img.test/a.png"
    assert done["error"] is None
    assert env.up.submits == 1


async def test_query_async_and_other_clients_see_404(env: Env) -> None:
    body = {"model": "slow", "prompt": "x"}
    async with env.http.post(
        env.gw.v1 + "/images/generations", params={"async": "true"}, json=body
    ) as resp:
        assert resp.status == 202
        job = await resp.json()
    path = f"/images/jobs/{job['id']}"
    with pytest.raises(openai.NotFoundError):
        await env.b.get(path, cast_to=object)
    with pytest.raises(openai.NotFoundError):
        await env.b.delete(path, cast_to=object)
    async with env.http.get(
        env.gw.url + f"/admin/jobs/{job['id']}", headers={"Authorization": "Bearer admin-key"}
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["owner"].startswith("key:")
    mine = await env.a.get(path, cast_to=object)
    assert isinstance(mine, dict) and mine["id"] == job["id"]


async def test_cancel_stops_the_polling(env: Env) -> None:
    job = (await _submit_async(env.a)).http_response.json()
    for _ in range(200):  # polling has started
        if env.up.polls >= 2:
            break
        await asyncio.sleep(0.02)
    cancelled = await env.a.delete(f"/images/jobs/{job['id']}", cast_to=object)
    assert isinstance(cancelled, dict) and cancelled["status"] == "cancelled"
    seen = env.up.polls
    await asyncio.sleep(0.3)  # 15 polling intervals
    assert env.up.polls == seen
    again = await env.a.get(f"/images/jobs/{job['id']}", cast_to=object)
    assert isinstance(again, dict) and again["status"] == "cancelled"


async def test_list_newest_first_with_a_cursor(env: Env) -> None:
    ids = [(await _submit_async(env.a)).http_response.json()["id"] for _ in range(3)]
    await _submit_async(env.b)  # another client's job is not listed
    async with env.http.get(env.gw.v1 + "/images/jobs", params={"limit": "2"}) as resp:
        page = await resp.json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2] and page["has_more"]
    params = {"limit": "2", "after": page["next_cursor"]}
    async with env.http.get(env.gw.v1 + "/images/jobs", params=params) as resp:
        rest = await resp.json()
    assert [j["id"] for j in rest["data"]] == ids[:1] and not rest["has_more"]


@pytest.mark.parametrize("env", [{"PIXGATE_JOBS_PER_CLIENT": "1"}], indirect=True)
async def test_limit_on_running_jobs_per_client(env: Env) -> None:
    await _submit_async(env.a)
    with pytest.raises(openai.RateLimitError):
        await _submit_async(env.a)
    assert (await _submit_async(env.b)).http_response.status_code == 202


async def test_idempotent_sync_retry_calls_the_upstream_once(env: Env) -> None:
    env.up.done.set()
    key = {"Idempotency-Key": "retry-1"}
    first = await env.a.images.generate(model="slow", prompt="a fox", extra_headers=key)
    raw = await env.a.images.with_raw_response.generate(
        model="slow", prompt="a fox", extra_headers=key
    )
    assert raw.headers["idempotent-replayed"] == "true"
    assert raw.parse().data[0].url == first.data[0].url == "https://img.test/a.png"
    assert env.up.submits == 1
    with pytest.raises(openai.UnprocessableEntityError):
        await env.a.images.generate(model="slow", prompt="a cat", extra_headers=key)
    # the key is the client's own: another client with the same key runs its own request
    await env.b.images.generate(model="slow", prompt="a cat", extra_headers=key)
    assert env.up.submits == 2


async def test_concurrent_duplicates_make_one_upstream_call(env: Env) -> None:
    key = {"Idempotency-Key": "together"}
    calls = [
        env.a.images.generate(model="slow", prompt="a fox", extra_headers=key) for _ in range(3)
    ]
    pending = asyncio.gather(*calls)
    for _ in range(200):
        if env.up.submits:
            break
        await asyncio.sleep(0.02)
    env.up.done.set()
    results = await pending
    assert {r.data[0].url for r in results} == {"https://img.test/a.png"}
    assert env.up.submits == 1


async def test_idempotent_async_retry_returns_the_same_job(env: Env) -> None:
    key = {"Idempotency-Key": "job-1"}
    first = (await _submit_async(env.a, **key)).http_response.json()
    again = await _submit_async(env.a, **key)
    assert again.http_response.status_code == 202
    assert again.http_response.json()["id"] == first["id"]
    assert env.up.submits <= 1


SECRET = "whsec_" + base64.b64encode(b"test-webhook-secret-0123456789ab").decode()
HOOKS = {
    "PIXGATE_WEBHOOK_SECRET": SECRET,
    "PIXGATE_WEBHOOK_ALLOW_HTTP": "1",
    "PIXGATE_FETCH_ALLOW_LOOPBACK": "1",
    "PIXGATE_WEBHOOK_BACKOFF": "0.05",
}


@pytest.mark.parametrize("env", [HOOKS], indirect=True)
async def test_webhook_retried_until_delivered_and_signed(env: Env) -> None:
    got: list[tuple[bytes, dict[str, str]]] = []
    delivered = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        got.append((await request.read(), dict(request.headers)))
        if len(got) <= 2:
            return web.Response(status=503)
        delivered.set()
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    async with serve_upstream(receiver) as hook_base:
        env.up.done.set()
        raw = await env.a.images.with_raw_response.generate(
            model="slow",
            prompt="a fox",
            extra_headers=ASYNC,
            extra_body={"callback_url": f"{hook_base}/hook"},
        )
        job = raw.http_response.json()
        async with asyncio.timeout(10):
            await delivered.wait()
    assert len(got) == 3
    body, headers = got[-1]
    payload = standardwebhooks.Webhook(SECRET).verify(body, headers)
    assert payload["type"] == "image.job.succeeded"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["result"]["data"][0]["url"] == "https://img.test/a.png"
    assert len({h["webhook-id"] for _, h in got}) == 1  # one message, retried
    for _ in range(100):  # the last attempt's log entry is saved right after the answer
        record = await env.a.get(f"/images/jobs/{job['id']}", cast_to=object)
        assert isinstance(record, dict)
        if len(record.get("deliveries", [])) == 3:
            break
        await asyncio.sleep(0.02)
    assert [d["status"] for d in record["deliveries"]] == [503, 503, 204]
    assert "callback_url" not in record


@pytest.mark.parametrize("env", [HOOKS], indirect=True)
async def test_callback_url_must_pass_the_ssrf_guard(env: Env) -> None:
    for url in ("ftp://example.test/x", "http://169.254.169.254/latest", "not a url"):
        with pytest.raises(openai.BadRequestError):
            await env.a.images.generate(
                model="slow", prompt="x", extra_headers=ASYNC, extra_body={"callback_url": url}
            )


async def test_callback_url_needs_https_and_a_secret(env: Env) -> None:
    with pytest.raises(openai.BadRequestError, match="https"):
        await env.a.images.generate(
            model="slow",
            prompt="x",
            extra_headers=ASYNC,
            extra_body={"callback_url": "http://hooks.example.test/x"},
        )
