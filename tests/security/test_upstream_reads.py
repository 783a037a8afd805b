"""Upstream data has no fixed-size limit below the gateway's own bound (issue 12, item 4).

The class of bug: a reader that refuses what a provider legitimately sends because of a limit
that comes from a buffer size, not from a decision. `StreamReader.readuntil` refused an SSE
line over twice the read buffer (128-512 KiB), but OpenAI streams each partial image as one
`data:` line of 1-3 MB; a gzip answer's Content-Length counts compressed bytes, and reading
exactly that many decompressed bytes refused the answer as "too large"; aiohttp refuses
response header lines over 8 KiB. Each case runs against a real aiohttp upstream speaking
OpenAI's protocol, through the gateway, with the official SDK; the SSE line splitter is also
checked over arbitrary chunkings."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.runtime.calls import sse, upstream
from engine.runtime.lifecycle.bodygate import READ_BUFFER
from tests.e2e.providers import config_dir, single
from tests.gateway import Gateway, run_gateway
from tests.upstreams import serve_upstream

KEY = "sk-proj-" + "R" * 40


def _noise_png(width: int, height: int) -> bytes:
    """An incompressible PNG: about 3 bytes per pixel."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()


PARTIAL = _noise_png(900, 700)  # ~1.9 MB: a 2.5 MB base64 `data:` line
FINAL = _noise_png(640, 480)
USAGE = {"total_tokens": 3, "input_tokens": 1, "output_tokens": 2,
         "input_tokens_details": {"text_tokens": 1, "image_tokens": 0}}  # fmt: skip


def _frame(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


async def _generations(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if request.headers.get("Authorization") != f"Bearer {KEY}":
        return web.json_response({"error": {"message": "bad key"}}, status=401)
    if body.get("stream"):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        common = {"created_at": 1, "size": "1024x1024", "quality": "low",
                  "background": "opaque", "output_format": "png"}  # fmt: skip
        partial = {"type": "image_generation.partial_image", "partial_image_index": 0,
                   "b64_json": base64.b64encode(PARTIAL).decode(), **common}  # fmt: skip
        done = {"type": "image_generation.completed", "usage": USAGE,
                "b64_json": base64.b64encode(FINAL).decode(), **common}  # fmt: skip
        for event in (partial, done):
            frame = _frame(event)
            for start in range(0, len(frame), 100_000):  # many TCP writes per line
                await resp.write(frame[start : start + 100_000])
        await resp.write_eof()
        return resp
    answer = json.dumps({"created": 1, "data": [{"b64_json": base64.b64encode(FINAL).decode()}]})
    headers = {"Content-Type": "application/json"}
    if body.get("user") == "long-header":
        headers["x-trace"] = "t" * 20_000
    if body.get("user") == "gzip":
        headers["Content-Encoding"] = "gzip"  # web.Response sets the compressed length
        return web.Response(body=gzip.compress(answer.encode()), headers=headers)
    return web.Response(body=answer.encode(), headers=headers)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    app = web.Application()
    app.router.add_post("/v1/images/generations", _generations)
    async with serve_upstream(app) as base:
        env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": KEY}
        routes = single("openai", "gpt-image-1")
        async with run_gateway(config_dir(tmp_path, ["openai"], routes), tmp_path / "f", env) as gw:
            yield gw


def _client(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=60)


async def test_a_partial_image_of_megabytes_in_one_sse_line(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        stream = await client.images.generate(
            model="m", prompt="a fox", stream=True, partial_images=1
        )
        events = [event async for event in stream]
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert base64.b64decode(events[0].b64_json) == PARTIAL
    assert base64.b64decode(events[1].b64_json) == FINAL


async def test_a_line_over_the_bound_is_a_clear_upstream_error(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream, "MAX_BODY", 1024 * 1024)  # the 2.5 MB line is now too long
    async with _client(gateway) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            stream = await client.images.generate(
                model="m", prompt="a fox", stream=True, partial_images=1
            )
            async for _ in stream:
                pass
    assert caught.value.status_code == 502
    assert "event-stream line is longer than 1048576 bytes" in caught.value.message


async def test_gzip_answer_with_its_compressed_length_and_a_long_header(
    gateway: Gateway,
) -> None:
    async with _client(gateway) as client:
        for user in ("gzip", "long-header"):
            result = await client.images.generate(
                model="m", prompt="a fox", response_format="b64_json", user=user
            )
            assert result.data is not None
            assert base64.b64decode(result.data[0].b64_json or "") == FINAL


class _Protocol:
    """What a StreamReader needs of its protocol: flow control it can call."""

    def __init__(self) -> None:
        self.paused = False
        self._reading_paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self, resume_parser: bool = True) -> None:
        self.paused = False


async def _lines(chunks: list[bytes], max_line: int) -> list[bytes]:
    reader = aiohttp.StreamReader(_Protocol(), READ_BUFFER, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return [line async for line in sse.iter_lines(reader, max_line)]


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
            st.integers(0, 5 * READ_BUFFER).map(lambda n: b"x" * n),
        ),
        max_size=6,
    ),
    crlf=st.booleans(),
    cuts=st.lists(st.integers(1, 100_000), max_size=8),
)
def test_lines_of_any_length_under_the_bound_in_any_chunking(
    lines: list[bytes], crlf: bool, cuts: list[int]
) -> None:
    text = b"".join(line + (b"\r\n" if crlf else b"\n") for line in lines)
    chunks, start = [], 0
    for cut in sorted(set(cuts)):
        chunks.append(text[start:cut])
        start = cut
    chunks.append(text[start:])
    bound = 5 * READ_BUFFER
    assert asyncio.run(_lines([c for c in chunks if c], bound)) == lines
    if lines:
        with pytest.raises(sse.LineTooLong):
            asyncio.run(_lines([text + b"y" * (bound + 2)], bound))
