"""`python -m bench.inproc`: pixgate's own CPU per small request, for A/B of engine changes.

The test upstream, the floor (bench/nullproxy.py), pixgate and a client share one uvloop in
one process. Each round sends the same small requests through pixgate, the floor and straight
to the upstream (`direct`: the client's and upstream's part, in every system's figure) and
reads the process's CPU time; pixgate minus floor is what pixgate itself adds. Compared
with `bench.run` it has no wrk, no pinning and no LiteLLM, so it finishes in about 20 s; the
median of several rounds is printed, and it drifts with the machine's speed (see
bench/README.md). Its numbers are not comparable with `bench.run`'s: here the client and
upstream count too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from engine import logsetup
from engine.app import create_app
from engine.eventloop import loop_factory
from engine.gctune import tune
from engine.settings import Settings

from . import nullproxy
from .procs import free_port
from .run import ROOT, assemble_config
from .scenarios import CLIENT_KEY, OPENAI_KEY
from .upstream import Upstream

BODY = b'{"model":"small","prompt":"a fox","size":"1024x1024"}'
HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}


def gateway_env(upstream: str, tmp: Path) -> dict[str, str]:
    """The environment an in-process pixgate gets: the bench's keys, every provider pointed
    at the test upstream, files under `tmp`."""
    return {
        "OPENAI_API_KEYS": OPENAI_KEY,
        "OPENAI_BASE_URL": upstream + "/v1",
        "BENCH_POLL_BASE_URL": upstream + "/v1",
        "PIXGATE_API_KEYS": CLIENT_KEY,
        "PIXGATE_STORAGE_DIR": str(tmp / "files"),
    }


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def post_all(
    http: aiohttp.ClientSession, url: str, body: bytes, requests: int, concurrency: int
) -> None:
    """`requests` POSTs of `body` to `url`, `concurrency` at a time; any answer but 200 raises."""

    async def worker(count: int) -> None:
        for _ in range(count):
            async with http.post(url, data=body, headers=HEADERS) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
                await resp.read()

    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))


async def _cpu_per_request(
    http: aiohttp.ClientSession, port: int, requests: int, concurrency: int
) -> float:
    """CPU µs per request of the whole process while `requests` go through one system."""
    url = f"http://127.0.0.1:{port}/v1/images/generations"
    started = time.process_time()
    await post_all(http, url, BODY, requests, concurrency)
    return (time.process_time() - started) / requests * 1e6


async def measure(rounds: int, requests: int, concurrency: int, log_file: Path) -> str:
    logsetup.configure("INFO")  # pixgate logs as `pixgate serve` does (its handler, formatter)
    stream = open(log_file, "a")  # noqa: ASYNC230, SIM115 (before serving; for the process)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)
    ports = [free_port() for _ in range(3)]
    upstream = f"http://127.0.0.1:{ports[0]}"
    with tempfile.TemporaryDirectory() as tmp:
        env = gateway_env(upstream, Path(tmp))
        config = assemble_config(ROOT, Path(tmp) / "config")
        settings = Settings.from_env(env, config_dir=config, watch=False)
        runners = [
            await _serve(Upstream(upstream).app(), ports[0]),
            await _serve(create_app(settings), ports[1]),
            await _serve(nullproxy.make_app(upstream), ports[2]),
        ]
        tune()  # as `pixgate serve` does once it has started
        # direct: the client posting to the upstream itself, the part every system shares
        systems = {"pixgate": ports[1], "floor": ports[2], "direct": ports[0]}
        cpu: dict[str, list[float]] = {name: [] for name in systems}
        try:
            async with aiohttp.ClientSession() as http:
                for port in systems.values():  # warm-up: connections, caches
                    await _cpu_per_request(http, port, requests // 2, concurrency)
                for _ in range(rounds):
                    for name, port in systems.items():
                        cpu[name].append(await _cpu_per_request(http, port, requests, concurrency))
        finally:
            for runner in runners:
                await runner.cleanup()
    g, f, d = (statistics.median(cpu[name]) for name in systems)
    rounds_text = ", ".join(f"{k} {[round(x) for x in v]}" for k, v in cpu.items())
    ratio = f"{(g - d) / (f - d):.2f}" if f > d else "n/a (the floor measured no more than direct)"
    return (
        f"pixgate {g:.1f} µs/request, floor {f:.1f}, pixgate's own {g - f:.1f}\n"
        f"direct (client and upstream alone) {d:.1f}; without them pixgate {g - d:.1f} / "
        f"floor {f - d:.1f} = {ratio}\n(rounds: {rounds_text})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000, help="per round and system")
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--log", type=Path, default=Path("/dev/null"), help="pixgate's log")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory("uvloop")[0]) as runner:
        print(runner.run(measure(args.rounds, args.requests, args.concurrency, args.log)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
