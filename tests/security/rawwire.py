"""A raw TCP upstream that writes exact bytes, and a gateway in front of it (the openai
provider's generate step, its step timeout made short).

aiohttp's web server only ever writes well-formed HTTP; a provider is untrusted and may send
anything. `RawUpstream` reads each request on a connection and hands it to a script that
writes whatever bytes the test wants (and says whether the connection stays open)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import openai

from engine.testing.images import make_image
from tests.e2e.providers import config_dir, single
from tests.gateway import Gateway, run_gateway

KEY = "sk-proj-" + "W" * 40
STEP_TIMEOUT = 1.0  # the generate step's `timeout` (seconds) in these tests
BOUND = STEP_TIMEOUT + 6  # no request may take longer: a hang fails the test, not the run
PNG = make_image(8, 8)
PNG2 = make_image(9, 9)  # a second, different image: who got which answer


JSON = "Content-Type: application/json"


def body_for(png: bytes) -> bytes:
    """What OpenAI answers a generation with: the image as base64 JSON."""
    image = base64.b64encode(png).decode()
    return json.dumps({"created": 1, "data": [{"b64_json": image}]}).encode()


def response(
    body: bytes,
    status: str = "200 OK",
    headers: tuple[str, ...] = (JSON,),
    length: int | None = None,
) -> bytes:
    """An HTTP/1.1 answer with a Content-Length (the body's own unless `length` says)."""
    size = len(body) if length is None else length
    head = "".join(f"{h}\r\n" for h in (*headers, f"Content-Length: {size}"))
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


OK = response(body_for(PNG))


@dataclass
class Request:
    head: bytes
    body: bytes
    connection: int  # which TCP connection (0, 1, ...) carried it

    def header(self, name: str) -> str | None:
        found = re.search(rb"\r\n" + name.encode() + rb":\s*([^\r]*)", self.head, re.IGNORECASE)
        return found.group(1).decode() if found else None


# (index of the request, the request, the writer) -> keep the connection open for the next
Script = Callable[[int, Request, asyncio.StreamWriter], Awaitable[bool]]


def replies(*answers: bytes, keep: bool = True) -> Script:
    """Answer the n-th request with answers[n] (the last one again after that)."""

    async def script(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(answers[min(n, len(answers) - 1)])
        await writer.drain()
        return keep

    return script


@dataclass
class RawUpstream:
    script: Script
    base: str = ""  # http://127.0.0.1:<port> once serving
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = self.connections
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                found = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
                body = await reader.readexactly(int(found.group(1))) if found else b""
                request = Request(head, body, conn)
                self.requests.append(request)
                if not await self.script(len(self.requests) - 1, request, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # stop(): asyncio's callback logs a cancelled handler
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def raw_upstream(script: Script) -> AsyncIterator[tuple[str, RawUpstream]]:
    """`(base URL, upstream)` on 127.0.0.1 and a free port."""
    upstream = RawUpstream(script)
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    upstream.base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield upstream.base, upstream
    finally:
        server.close()
        await upstream.stop()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def wire(
    tmp: Path, script: Script, step_timeout: float = STEP_TIMEOUT
) -> AsyncIterator[tuple[Gateway, RawUpstream]]:
    """The gateway with one openai route `m` whose upstream is a raw server running `script`
    (`step_timeout` under BOUND)."""
    async with raw_upstream(script) as (base, upstream):
        root = config_dir(tmp, ["openai"], single("openai", "gpt-image-1"))
        provider = root / "providers.d" / "openai.yaml"
        text = provider.read_text(encoding="utf-8")
        provider.write_text(text.replace("timeout: 180s", f"timeout: {step_timeout:g}s"), "utf-8")
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": KEY}
        async with run_gateway(root, tmp / "files", env) as gw:
            yield gw, upstream


def client(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=BOUND)


async def generate(gw: Gateway) -> bytes:
    """One image through the gateway, bounded; its bytes."""
    async with client(gw) as sdk, asyncio.timeout(BOUND):
        result = await sdk.images.generate(model="m", prompt="a fox", response_format="b64_json")
    assert result.data is not None
    return base64.b64decode(result.data[0].b64_json or "")


async def refused(gw: Gateway, status: int = 502, *fragments: str) -> str:
    """A request the gateway must answer with `status`, an OpenAI-shaped error whose message
    holds `fragments` and never the key; within BOUND seconds. The message.

    Fragments name what went wrong in words any HTTP client would use ("timed out", "too
    large"), never one library's exception names."""
    async with client(gw) as sdk, asyncio.timeout(BOUND):
        try:
            await sdk.images.generate(model="m", prompt="a fox", response_format="b64_json")
        except openai.APIStatusError as exc:
            caught = exc
        else:
            raise AssertionError(f"expected HTTP {status}, got an image")
    assert caught.status_code == status, (caught.status_code, caught.message)
    error = caught.body
    assert isinstance(error, dict) and isinstance(error.get("message"), str), error
    assert error.get("type") == {502: "upstream_error", 504: "timeout_error"}[status], error
    text = json.dumps(error) + caught.response.text
    assert KEY not in text and "W" * 20 not in text
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return str(error["message"])


async def bad_then_ok(tmp: Path, bad: bytes, status: int, *fragments: str) -> str:
    """`bad` (then close) fails the first request with `status`; the second gets its image.
    The first request's error message."""

    async def script(n: int, _: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(bad if n == 0 else OK)
        await writer.drain()
        return n > 0

    async with wire(tmp, script) as (gw, _):
        message = await refused(gw, status, *fragments)
        assert await generate(gw) == PNG
    return message
