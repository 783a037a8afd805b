"""One fake OpenAI Images upstream for a whole fleet, in a thread of its own.

It serves `POST /{provider}/v1/images/generations` with Bearer keys, like OpenAI's API
(provider-apis.md §1.1), and counts per key what the fleet sent: requests, and the most
in flight at once. What a key answers is set per key: ok, 401, 429 with Retry-After, 500,
and how long it takes.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from tests.gateway import free_port
from tests.upstreams.common import image_bytes

PNG = base64.b64encode(image_bytes("png", 8, 8)).decode()


class ServerThread:
    """An aiohttp app on 127.0.0.1:`port`, served from a thread of its own: the gateways under
    test are real processes, so a test may block while the fake upstream keeps answering."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    def start(self, port: int, routes: Callable[[web.Application], object]) -> None:
        ready = threading.Event()

        async def main() -> None:
            app = web.Application()
            routes(app)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        assert ready.wait(10), "fake upstream did not start"

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class Behaviour:
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0


@dataclass
class FleetUpstream:
    port: int = field(default_factory=free_port)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)  # by key
    requests: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    most_in_flight: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ServerThread = field(default_factory=ServerThread)

    def base_url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.port}/{provider}/v1"

    def set(self, key: str, **how: object) -> None:
        self.behaviour[key] = Behaviour(**how)  # type: ignore[arg-type]

    async def generations(self, request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        body = await request.json()
        how = self.behaviour.get(key, Behaviour())
        with self._lock:
            self.requests[key] += 1
            self.in_flight[key] += 1
            self.most_in_flight[key] = max(self.most_in_flight[key], self.in_flight[key])
        try:
            if how.delay:
                await asyncio.sleep(how.delay)
            if how.status != 200:
                headers = {"Retry-After": how.retry_after} if how.retry_after else {}
                error = {"message": f"scripted {how.status}", "type": "error", "code": None}
                return web.json_response({"error": error}, status=how.status, headers=headers)
            data = [{"b64_json": PNG} for _ in range(int(body.get("n") or 1))]
            return web.json_response({"created": 1, "data": data})
        finally:
            with self._lock:
                self.in_flight[key] -= 1

    def start(self) -> None:
        self._server.start(
            self.port,
            lambda app: app.router.add_post("/{provider}/v1/images/generations", self.generations),
        )

    def stop(self) -> None:
        self._server.stop()
