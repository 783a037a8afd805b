"""A fake polling upstream for job durability tests, in a thread of its own (the gateways are
real processes, so the test itself can block).

It speaks Replicate's predictions protocol (provider-apis.md §9), Bearer keys:

* ``POST /v1/predictions`` ``{"input": {"prompt": ...}}`` -> 201 ``{"id", "status": "starting",
  "urls": {"get", "cancel"}}`` (a *submit*, counted per prompt);
* ``GET /v1/predictions/{id}`` -> ``processing`` until the test calls ``release()``, then
  ``succeeded`` with ``output`` (a data URI of a PNG), or ``failed`` after ``fail()``;
  ``canceled`` once cancelled (a *poll*, counted per prompt). A prediction belongs to the
  account of the key that created it: another key gets 404, as on Replicate;
* ``POST /v1/predictions/{id}/cancel`` -> the prediction, ``canceled`` (counted per prompt).

and one synchronous endpoint, ``POST /v1/sync`` ``{"prompt"}``, that answers
``{"data": [{"b64_json"}]}`` only once released (counted per prompt).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fleet.upstream import ServerThread
from tests.gateway import free_port
from tests.upstreams.common import image_bytes

PNG = base64.b64encode(image_bytes("png", 8, 8)).decode()
KEY = "pk-durable-0123456789abcdef"
OTHER_KEYS = ("pk-durable-first-0123456789", "pk-durable-second-0123456789")


@dataclass
class PollingUpstream:
    port: int = field(default_factory=free_port)
    submits: Counter[str] = field(default_factory=Counter)
    polls: Counter[str] = field(default_factory=Counter)
    cancels: Counter[str] = field(default_factory=Counter)
    syncs: Counter[str] = field(default_factory=Counter)
    released: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    _prompts: dict[str, str] = field(default_factory=dict)  # prediction id -> prompt
    _owners: dict[str, str] = field(default_factory=dict)  # prediction id -> its key
    _cancelled: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ServerThread = field(default_factory=ServerThread)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def release(self, prompt: str) -> None:
        with self._lock:
            self.released.add(prompt)

    def fail(self, prompt: str) -> None:
        with self._lock:
            self.failing.add(prompt)

    def count(self, counter: Counter[str], prompt: str) -> int:
        with self._lock:
            return counter[prompt]

    def wait_for(self, what: Callable[[], bool], timeout: float, message: str) -> None:
        end = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < end, message
            time.sleep(0.05)

    def _prediction(self, pid: str) -> dict[str, Any]:
        prompt = self._prompts[pid]
        base = f"{self.base_url}/predictions/{pid}"
        body: dict[str, Any] = {"id": pid, "status": "processing", "output": None}
        body["urls"] = {"get": base, "cancel": base + "/cancel"}
        if pid in self._cancelled:
            body["status"] = "canceled"
        elif prompt in self.failing:
            body.update(status="failed", error="the model failed")
        elif prompt in self.released:
            body.update(status="succeeded", output=[f"data:image/png;base64,{PNG}"])
        return body

    def _authorised(self, request: web.Request) -> bool:
        return self._key(request) in (KEY, *OTHER_KEYS)

    def _key(self, request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    def _mine(self, request: web.Request, pid: str) -> bool:
        """The prediction exists and belongs to the key's account."""
        return self._owners.get(pid) == self._key(request)

    async def create(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"detail": "Unauthenticated"}, status=401)
        prompt = str((await request.json())["input"]["prompt"])
        pid = secrets.token_hex(8)
        with self._lock:
            self.submits[prompt] += 1
            self._prompts[pid] = prompt
            self._owners[pid] = self._key(request)
            body = {**self._prediction(pid), "status": "starting"}
        return web.json_response(body, status=201)

    async def get(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"detail": "Unauthenticated"}, status=401)
        pid = request.match_info["id"]
        with self._lock:
            if not self._mine(request, pid):
                return web.json_response({"detail": "Not found."}, status=404)
            self.polls[self._prompts[pid]] += 1
            return web.json_response(self._prediction(pid))

    async def cancel(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"detail": "Unauthenticated"}, status=401)
        pid = request.match_info["id"]
        with self._lock:
            if not self._mine(request, pid):
                return web.json_response({"detail": "Not found."}, status=404)
            self.cancels[self._prompts[pid]] += 1
            self._cancelled.add(pid)
            return web.json_response(self._prediction(pid))

    async def sync(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"detail": "Unauthenticated"}, status=401)
        prompt = str((await request.json())["prompt"])
        with self._lock:
            self.syncs[prompt] += 1
        end = time.monotonic() + 60
        # released from the test's thread: no asyncio.Event of this loop can be set from there
        while prompt not in self.released and time.monotonic() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return web.json_response({"created": 1, "data": [{"b64_json": PNG}]})

    def start(self) -> None:
        self._server.start(self.port, self._routes)

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/predictions", self.create)
        app.router.add_get("/v1/predictions/{id}", self.get)
        app.router.add_post("/v1/predictions/{id}/cancel", self.cancel)
        app.router.add_post("/v1/sync", self.sync)

    def stop(self) -> None:
        self._server.stop()
