"""Peak RSS of one `pixgate serve` under a burst of big b64_json answers (issue 12, item 5).

N clients ask at once; a real aiohttp upstream (its own process) answers each with a 1.5 MB
JSON body at once, so most requests wait for a large-body slot (PIXGATE_MAX_LARGE_BODIES)
with their upstream answer arriving. What a waiting request costs is what this shows::

    python -m bench.waiting_memory                      # 200 clients, 4 slots, chunked=no
    python -m bench.waiting_memory --clients 50 --chunked
    python -m bench.waiting_memory --stream             # 2 MB partial_image SSE lines

RSS is sampled from /proc every 10 ms (and VmHWM, reset before the burst when allowed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from bench.procstat import reset_peak, status_kib

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-proj-" + "W" * 40


def _answer(size: int) -> bytes:
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (size // 256)).decode()
    return json.dumps({"created": 1, "data": [{"b64_json": image}]}).encode()


def upstream_main(port: int, size: int, chunked: bool, stream: bool) -> None:
    """The upstream process: every POST answers with `size` bytes of image (as base64)."""
    body = _answer(size)
    image = json.loads(body)["data"][0]["b64_json"]

    async def images(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        if stream or payload.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            partial = {
                "type": "image_generation.partial_image",
                "b64_json": image,
                "partial_image_index": 0,
            }
            done = {
                "type": "image_generation.completed",
                "b64_json": image,
                "usage": {"total_tokens": 1, "input_tokens": 1, "output_tokens": 0},
            }
            for name, data in (
                ("image_generation.partial_image", partial),
                ("image_generation.completed", done),
            ):
                await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            await resp.write_eof()
            return resp
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if not chunked:
            resp.content_length = len(body)
        await resp.prepare(request)
        for start in range(0, len(body), 256 * 1024):
            await resp.write(body[start : start + 256 * 1024])
        await resp.write_eof()
        return resp

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/v1/images/generations", images)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_up(url: str, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > end:
                raise SystemExit(f"{url} did not come up")
            await asyncio.sleep(0.1)


async def _burst(url: str, clients: int, stream: bool) -> tuple[int, int]:
    ok = failed = 0
    body = {"model": "m", "prompt": "x", "response_format": "b64_json"}
    if stream:
        body = {"model": "m", "prompt": "x", "stream": True, "partial_images": 1}
    conn = aiohttp.TCPConnector(limit=clients + 10)
    async with aiohttp.ClientSession(connector=conn) as http:

        async def one() -> None:
            nonlocal ok, failed
            try:
                timeout = aiohttp.ClientTimeout(total=300)
                async with http.post(url, json=body, timeout=timeout) as resp:
                    data = await resp.read()
                    if resp.status == 200 and len(data) > 1 << 20:
                        ok += 1
                    else:
                        failed += 1
                        if failed <= 3:
                            print("failed:", resp.status, data[:300], file=sys.stderr)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failed += 1
                print("failed:", repr(exc), file=sys.stderr)

        await asyncio.gather(*(one() for _ in range(clients)))
    return ok, failed


def measure(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pixgate-waiting-"))
    (tmp / "config" / "providers.d").mkdir(parents=True)
    (tmp / "config" / "providers.d" / "openai.yaml").write_text(
        (REPO / "providers.d" / "openai.yaml").read_text()
    )
    routes = {
        "demo": False,
        "routes": {"m": {"targets": [{"provider": "openai", "model": "gpt-image-1"}]}},
    }
    (tmp / "config" / "routes.yaml").write_text(yaml.safe_dump(routes))
    up_port, gw_port = _free_port(), _free_port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.waiting_memory",
            "--upstream",
            str(up_port),
            "--size",
            str(args.size),
            *(["--chunked"] if args.chunked else []),
            *(["--stream"] if args.stream else []),
        ],
        cwd=REPO,
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
        "OPENAI_API_KEYS": KEY,
        "PIXGATE_MAX_LARGE_BODIES": str(args.slots),
        "PIXGATE_STORAGE_DIR": str(tmp / "files"),
        "PIXGATE_LOG_LEVEL": "WARNING",
    }
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "serve",
            "--config",
            str(tmp / "config"),
            "--port",
            str(gw_port),
            "--no-watch",
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    try:
        asyncio.run(_burst_and_watch(args, up_port, gw_port, gateway.pid))
    finally:
        for proc in (gateway, upstream):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _burst_and_watch(args: argparse.Namespace, up_port: int, gw_port: int, pid: int) -> None:
    await _wait_up(f"http://127.0.0.1:{up_port}/")
    await _wait_up(f"http://127.0.0.1:{gw_port}/health")
    url = f"http://127.0.0.1:{gw_port}/v1/images/generations"
    await _burst(url, 2, args.stream)  # warm-up: imports, first connections
    idle = status_kib(pid, "VmRSS")
    reset_peak(pid)
    peak = idle
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, status_kib(pid, "VmRSS"))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    ok, failed = await _burst(url, args.clients, args.stream)
    elapsed = time.monotonic() - started
    done.set()
    await sampler
    peak = max(peak, status_kib(pid, "VmHWM"))
    await asyncio.sleep(2)
    after = status_kib(pid, "VmRSS")
    grow = (peak - idle) / 1024
    print(
        f"clients={args.clients} slots={args.slots} size={args.size} "
        f"chunked={args.chunked} stream={args.stream}: ok={ok} failed={failed} "
        f"in {elapsed:.1f}s; RSS idle {idle / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB "
        f"(+{grow:.0f} MiB, {grow / args.clients * 1024:.0f} KiB per client), "
        f"2 s after {after / 1024:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--size", type=int, default=1_100_000, help="image bytes per answer")
    parser.add_argument("--chunked", action="store_true", help="no Content-Length upstream")
    parser.add_argument("--stream", action="store_true", help="SSE answers (partial images)")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        upstream_main(args.upstream, args.size, args.chunked, args.stream)
        return
    measure(args)


if __name__ == "__main__":
    main()
