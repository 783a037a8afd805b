"""The floor: the least an aiohttp gateway can do per request (`python -m bench.nullproxy`).

It reads the client's body, POSTs it unchanged to the upstream through one shared
ClientSession (same connector limits as pixgate), and returns the upstream's body. No routing,
templates, validation or logging. Run on the same event loop as pixgate (`--uvloop`), it
shows how much of pixgate's cost per request is aiohttp itself and how much is pixgate's own.

A body with `"model": "poll"` (or `"poll-long"`) gets the bench-poll provider's flow
(bench/config/providers.d/bench-poll*.yaml) instead, hard-coded: POST the submit to
`<upstream>/v1/poll/tasks`, then GET `/v1/poll/tasks/<task_id>` every POLL_EVERY_S[model] (the
first one interval after the submit answer) until `status` is `succeeded`, and answer
`{"created", "data": [{"url"}]}`. `failed`, a non-2xx answer, or a job not done within
POLL_TIMEOUT_S[model] answers 502.

A body with `"model": "download"` gets what pixgate does for a URL answer when the client asks
for `b64_json`: POST upstream, GET the answer's `data[0].url`, base64-encode the image and
answer `{"created", "data": [{"b64_json"}]}`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from engine.eventloop import loop_factory

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
# Keep in line with bench-poll.yaml (`every: 250ms`, `timeout: 60s`), bench-poll-long.yaml
# (`every: 2s`, `timeout: 120s`) and the engine's polling:
# the first poll comes one interval after the submit answer, not at once (the engine's default
# `first_after` for a polling step that follows another step).
POLL_EVERY_S = {"poll": 0.25, "poll-long": 2.0}
POLL_TIMEOUT_S = {"poll": 60.0, "poll-long": 120.0}


async def _session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=1024, limit_per_host=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        app[SESSION] = session
        yield


async def forward(request: web.Request) -> web.Response:
    body = await request.read()
    if b'"poll' in body or b'"download"' in body:  # a cheap test: others pass unparsed
        job = json.loads(body)
        if job.get("model") in POLL_EVERY_S:
            return await poll_job(request.app, job)
        if job.get("model") == "download":
            return await download_job(request.app, body)
    async with request.app[SESSION].post(
        request.app[UPSTREAM] + "/v1/images/generations",
        data=body,
        headers={"Content-Type": "application/json"},
    ) as resp:
        payload = await resp.read()
        return web.Response(status=resp.status, body=payload, content_type="application/json")


class UpstreamError(Exception):
    pass


async def _json(resp: aiohttp.ClientResponse) -> Any:
    payload = await resp.read()
    if not 200 <= resp.status < 300:
        raise UpstreamError(f"upstream answered {resp.status}: {payload[:200]!r}")
    return json.loads(payload)


async def download_job(app: web.Application, body: bytes) -> web.Response:
    """POST upstream, GET the image its answer names, answer it as b64_json; 502 on failure."""
    session = app[SESSION]
    try:
        async with session.post(
            app[UPSTREAM] + "/v1/images/generations",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:
            answer = await _json(resp)
        async with session.get(answer["data"][0]["url"]) as resp:
            if not 200 <= resp.status < 300:
                raise UpstreamError(f"image download answered {resp.status}")
            image = await resp.read()
    except (UpstreamError, aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
        return _bad_gateway(f"{type(exc).__name__}: {exc}")
    # Written around the encoded bytes: base64 needs no JSON escaping, so no string copy.
    head = b'{"created":%d,"data":[{"b64_json":"' % int(answer.get("created") or time.time())
    payload = head + base64.b64encode(image) + b'"}]}'
    return web.Response(body=payload, content_type="application/json")


async def poll_job(app: web.Application, job: dict[str, Any]) -> web.Response:
    """Submit, then sleep POLL_EVERY_S and poll, until succeeded; 502 on anything else."""
    session, tasks = app[SESSION], app[UPSTREAM] + "/v1/poll/tasks"
    model = job["model"]
    every, limit = POLL_EVERY_S[model], POLL_TIMEOUT_S[model]
    try:
        async with asyncio.timeout(limit):
            submit = {k: job.get(k) for k in ("model", "prompt", "size")}
            async with session.post(tasks, json=submit) as resp:
                task_id = (await _json(resp))["task_id"]
            while True:
                await asyncio.sleep(every)
                async with session.get(f"{tasks}/{task_id}") as resp:
                    state = await _json(resp)
                if state["status"] == "succeeded":
                    break
                if state["status"] == "failed":
                    raise UpstreamError(f"task failed: {state.get('error')!r}")
        data = [{"url": image["url"]} for image in state["data"]]
    except (UpstreamError, aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
        return _bad_gateway(f"{type(exc).__name__}: {exc}")
    except TimeoutError:
        return _bad_gateway(f"polling job not done after {limit:g} s")
    return web.json_response({"created": int(time.time()), "data": data})


def _bad_gateway(message: str) -> web.Response:
    error = {"message": message[:300], "type": "upstream_error"}
    return web.json_response({"error": error}, status=502)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/images/generations", forward)
    return app


async def serve(upstream: str, port: int) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="minimal aiohttp pass-through proxy (the floor)")
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8901")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="use uvloop (default: asyncio)")
    args = parser.parse_args(argv)
    if not args.upstream.startswith(("http://127.0.0.1", "http://localhost")):
        print("bench.nullproxy: loopback upstreams only", file=sys.stderr)
        return 2
    factory, _ = loop_factory("uvloop" if args.uvloop else "asyncio")
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.upstream, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
