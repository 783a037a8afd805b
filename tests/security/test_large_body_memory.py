"""The large-body gate bounds memory by configuration, not by the number of clients (issue 12,
item 5). 200 concurrent 1.5 MB b64_json answers grew RSS by ~1.7 MiB per request even with
PIXGATE_MAX_LARGE_BODIES=4: aiohttp keeps a keep-alive connection's last response until the
next request on it, so every idle client kept its answer. Counted, not timed: after a burst,
how many big answers are still alive while their clients sit idle on keep-alive connections."""

from __future__ import annotations

import base64
import gc
import json
from pathlib import Path

import aiohttp
from aiohttp import web

from engine.api.keys import STATE
from tests.e2e.providers import config_dir
from tests.gateway import run_gateway
from tests.upstreams import serve_upstream

BIG = base64.b64encode(bytes(range(256)) * 4400).decode()  # 1.1 MB of image, 1.5 MB of text
ANSWER = json.dumps({"created": 1, "data": [{"b64_json": BIG}]}).encode()
CLIENTS = 24


def big_answers_alive() -> int:
    """web.Response objects that still hold a body over 1 MB."""
    count = 0
    for obj in gc.get_objects():
        if isinstance(obj, web.Response):
            body = obj.body
            size = len(body) if isinstance(body, bytes | bytearray) else getattr(body, "size", 0)
            if size and size > 1 << 20:
                count += 1
    return count


async def test_idle_keep_alive_clients_hold_no_big_answers(tmp_path: Path) -> None:
    async def images(request: web.Request) -> web.StreamResponse:
        """Written by hand: a StreamResponse keeps no body, so only the gateway's count."""
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(ANSWER)
        await resp.prepare(request)
        await resp.write(ANSWER)
        await resp.write_eof()
        return resp

    upstream = web.Application()
    upstream.router.add_post("/v1/images/generations", images)
    async with serve_upstream(upstream) as base:
        env = {
            "OPENAI_BASE_URL": f"{base}/v1",
            "OPENAI_API_KEYS": "sk-proj-" + "M" * 40,
            "PIXGATE_MAX_LARGE_BODIES": "2",
        }
        routes = {"routes": {"m": {"targets": [{"provider": "openai", "model": "gpt-image-1"}]}}}
        async with run_gateway(config_dir(tmp_path, ["openai"], routes), tmp_path / "f", env) as gw:
            body = {"model": "m", "prompt": "x", "response_format": "b64_json"}
            # One keep-alive connection per client, left open after its answer.
            sessions = [
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
                for _ in range(CLIENTS)
            ]
            try:
                for http in sessions:
                    async with http.post(f"{gw.v1}/images/generations", json=body) as resp:
                        assert resp.status == 200
                        assert len((await resp.json())["data"][0]["b64_json"]) == len(BIG)
                gc.collect()
                assert big_answers_alive() == 0
                assert gw.app[STATE].body_gate.free == 2
            finally:
                for http in sessions:
                    await http.close()
