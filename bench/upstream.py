"""The bench's test upstream: a real aiohttp server speaking the OpenAI Images protocol.

`python -m bench.upstream --port P` (uvloop when importable). The scenario is chosen by the
request's `model` field, or by the path prefix `/s/<scenario>/v1/images/generations`:

| scenario   | answer                                                                        |
|------------|-------------------------------------------------------------------------------|
| `small`    | `{"created", "data": [{"url"}]}`, a few hundred bytes                          |
| `b64`      | `{"data": [{"b64_json"}]}` of ~1.5 MB, encoded once at start-up                |
| `slow`     | like `small`, after a fixed 1 s delay                                          |
| `long`     | like `small`, after a fixed 10 s delay (many open requests)                    |
| `store`    | the `b64` answer, for a client that asks for `url`: the gateway stores it      |
| `redis`    | the `small` answer (pixgate with memory state, then with Redis state)          |
| `download` | a URL to a ~1.1 MB PNG that this server serves at `/files/big.png`            |
| `poll`     | `POST /v1/poll/tasks` -> `{"task_id"}`; `GET /v1/poll/tasks/<id>` is `running` |
|            | until 1 s after submit, then `succeeded` with `data[].url`                     |
| `poll-long`| the same, done 30 s after submit (many polling jobs)                           |

`GET /health` also reports the generation requests open now and the most open at once since
the last `GET /health?reset=1`, so a run can show how many requests really were held open.

Every answer body is precomputed bytes, so the upstream spends as little CPU as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import random
import struct
import sys
import time
import zlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from engine.eventloop import loop_factory

SLOW_DELAY = 1.0
LONG_DELAY = 10.0
POLL_DONE_AFTER = {"poll": 1.0, "poll-long": 30.0}  # by the submitted model
POLL_KEEP = 120.0  # finished tasks are forgotten after this many seconds
IMAGE_WIDTH, IMAGE_HEIGHT = 640, 576  # random RGB: a ~1.1 MB PNG, ~1.5 MB as base64
SCENARIOS = ("small", "b64", "slow", "long", "store", "redis", "download", "poll", "poll-long")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(width: int, height: int, seed: int) -> bytes:
    """A valid RGB PNG of random (incompressible, so large) pixels; deterministic per seed."""
    rng = random.Random(seed)
    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 1))
        + _chunk(b"IEND", b"")
    )


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Upstream:
    """State and handlers; `base` is this server's own URL, used in URL answers."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.small_png = make_png(8, 8, 1)
        self.big_png = make_png(IMAGE_WIDTH, IMAGE_HEIGHT, 2)
        created = int(time.time())
        url_small = {"created": created, "data": [{"url": f"{base}/files/small.png"}]}
        self.small_body = _json(url_small)
        self.b64_body = _json(
            {
                "created": created,
                "data": [{"b64_json": base64.b64encode(self.big_png).decode("ascii")}],
            }
        )
        self.download_body = _json({"created": created, "data": [{"url": f"{base}/files/big.png"}]})
        self.tasks: dict[str, float] = {}  # task id -> when it is done (monotonic)
        self.ids = itertools.count(1)
        self.requests = 0
        self.open = 0  # generation requests being answered now
        self.peak_open = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_post("/v1/images/generations", self.generations)
        app.router.add_post("/s/{scenario}/v1/images/generations", self.generations)
        app.router.add_post("/v1/poll/tasks", self.submit)
        app.router.add_get("/v1/poll/tasks/{task_id}", self.poll)
        app.router.add_get("/files/small.png", self._file(lambda: self.small_png))
        app.router.add_get("/files/big.png", self._file(lambda: self.big_png))
        return app

    async def health(self, request: web.Request) -> web.Response:
        body = {
            "status": "ok",
            "requests": self.requests,
            "open_tasks": len(self.tasks),
            "open_requests": self.open,
            "peak_open_requests": self.peak_open,
        }
        if request.query.get("reset"):
            self.peak_open = self.open
        return web.json_response(body)

    async def generations(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        try:
            return await self._generation(request)
        finally:
            self.open -= 1

    async def _generation(self, request: web.Request) -> web.Response:
        raw = await request.read()
        scenario = request.match_info.get("scenario")
        if scenario is None:
            try:
                body = json.loads(raw)
                scenario = str(body.get("model", "")) if isinstance(body, dict) else ""
            except ValueError:
                return _error(400, "the body is not JSON", "invalid_json")
        if scenario in ("slow", "long"):
            await asyncio.sleep(SLOW_DELAY if scenario == "slow" else LONG_DELAY)
            return _ok(self.small_body)
        if scenario in ("small", "redis"):
            return _ok(self.small_body)
        if scenario in ("b64", "store"):
            return _ok(self.b64_body)
        if scenario == "download":
            return _ok(self.download_body)
        return _error(404, f"unknown bench scenario {scenario!r}", "model_not_found")

    async def submit(self, request: web.Request) -> web.Response:
        self.requests += 1
        raw = await request.read()
        try:
            model = json.loads(raw).get("model")
        except (ValueError, AttributeError):
            return _error(400, "the body is not a JSON object", "invalid_json")
        if model not in POLL_DONE_AFTER:
            return _error(404, f"unknown polling model {model!r}", "model_not_found")
        now = time.monotonic()
        if len(self.tasks) > 50_000:
            self.tasks = {k: t for k, t in self.tasks.items() if now - t < POLL_KEEP}
        task_id = f"task-{next(self.ids)}"
        self.tasks[task_id] = now + POLL_DONE_AFTER[model]
        return _ok(_json({"task_id": task_id, "status": "queued"}))

    async def poll(self, request: web.Request) -> web.Response:
        self.requests += 1
        task_id = request.match_info["task_id"]
        done_at = self.tasks.get(task_id)
        if done_at is None:
            return _error(404, f"no task {task_id}", "not_found")
        if time.monotonic() < done_at:
            return _ok(_json({"task_id": task_id, "status": "running"}))
        return _ok(
            _json(
                {
                    "task_id": task_id,
                    "status": "succeeded",
                    "data": [{"url": f"{self.base}/files/small.png"}],
                }
            )
        )

    def _file(self, data: Callable[[], bytes]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            self.requests += 1
            return web.Response(body=data(), content_type="image/png")

        return handler


def _ok(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def _error(status: int, message: str, code: str) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return web.Response(status=status, body=_json(body), content_type="application/json")


async def serve(host: str, port: int) -> None:
    upstream = Upstream(f"http://{host}:{port}")
    runner = web.AppRunner(upstream.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    print(f"bench upstream ready on http://{host}:{port} loop={_loop_name()}", flush=True)
    try:
        await asyncio.Event().wait()  # until SIGTERM / SIGINT
    finally:
        await runner.cleanup()


def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pixgate bench test upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("bench upstream: loopback only", file=sys.stderr)
        return 2
    factory, _ = loop_factory("asyncio" if args.no_uvloop else "auto")
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
