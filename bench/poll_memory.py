"""`python -m bench.poll_memory`: what waiting polling jobs hold, in pixgate and the floor.

The gateway (pixgate's app, or the floor with `--floor`) runs in this process on uvloop; the
test upstream and a client run in their own processes, so only the gateway's memory counts.
After a warm-up of 50 short polling jobs, the client submits N `poll-long` jobs (done 30 s
after submit, polled every `--every` s) on new connections and holds them; once the gateway
handles all N and each has polled once, this prints its RSS over the warm state, per job:

    python -m bench.poll_memory --rss-only --jobs 3000 --ramp 3    # RSS as served, 1,000/s
    python -m bench.poll_memory --rss-only --jobs 3000             # all at once: the burst
    python -m bench.poll_memory --every 12 --jobs 300 --walk       # heap, and what one holds
    python -m bench.poll_memory --floor ...                        # the same for the floor

Without `--rss-only`, tracemalloc runs (it inflates RSS and slows the gateway: keep N small
and `--every` long, so that no poll is in flight at the snapshot) and the heap per job is
printed grouped by where it was allocated, with the objects per type; `--walk` adds what one
request holds on its own by coroutine of its chain, `--chain` the chain with each frame's
locals, `--mallocstats` pymalloc's and glibc's totals before and after (free space in them is
RSS that no object uses: fragmentation, or what a burst used and gave back).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import logging
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import aiohttp
from aiohttp import web

from . import heapwalk
from .inproc import gateway_env
from .procs import free_port
from .procstat import reset_peak, status_kib
from .run import ROOT, assemble_config
from .scenarios import CLIENT_KEY

JOB = b'{"model":"poll-long","prompt":"a fox","size":"1024x1024"}'
WARM = b'{"model":"poll","prompt":"a fox","size":"1024x1024"}'
HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}


async def client_main(url: str, jobs: int, ramp: float) -> None:
    """The client process: 50 short jobs, then, after a line on stdin, `jobs` long ones on new
    connections (spread over `ramp` s), held until it is killed."""
    timeout = aiohttp.ClientTimeout(total=300)

    async def one(http: aiohttp.ClientSession, body: bytes) -> str:
        try:
            async with http.post(url, data=body, headers=HEADERS) as resp:
                await resp.read()
                return str(resp.status)
        except aiohttp.ClientError as exc:
            return type(exc).__name__

    async with aiohttp.ClientSession(timeout=timeout) as http:
        statuses = await asyncio.gather(*(one(http, WARM) for _ in range(50)))
    print(f"warm-up: {dict(collections.Counter(statuses))}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        batch = []
        for i in range(jobs):
            batch.append(asyncio.create_task(one(http, JOB)))
            if ramp and i % 100 == 99:
                await asyncio.sleep(ramp * 100 / jobs)
        print("submitted", flush=True)
        await asyncio.gather(*batch)


async def _handling(runner: web.AppRunner, jobs: int, limit: float = 90.0) -> int:
    """How many requests the gateway handles, once that is `jobs` (at most `limit` s)."""
    server = runner.server
    assert server is not None
    deadline = time.monotonic() + limit
    while True:
        count = sum(1 for h in server.connections if getattr(h, "_request_in_progress", 1))
        if count >= jobs or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.2)


def _app(args: argparse.Namespace, upstream: str, tmp: Path) -> web.Application:
    from engine.app import create_app
    from engine.settings import Settings

    from . import nullproxy

    if args.floor:
        nullproxy.POLL_EVERY_S["poll-long"] = args.every
        return nullproxy.make_app(upstream)
    config = assemble_config(ROOT, tmp / "config")
    provider = config / "providers.d" / "bench-poll-long.yaml"
    provider.write_text(provider.read_text().replace("every: 2s", f"every: {args.every:g}s"))
    env = gateway_env(upstream, tmp)
    return create_app(Settings.from_env(env, config_dir=config, watch=False))


async def measure(args: argparse.Namespace) -> None:
    from engine.gctune import tune

    logging.basicConfig(level="INFO", filename=os.devnull)  # pixgate logs as when serving
    up_port, gw_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    procs: list[subprocess.Popen[str]] = []
    runner: web.AppRunner | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            up = [sys.executable, "-m", "bench.upstream", "--port", str(up_port)]
            # started before any load: blocking for a moment measures nothing wrong
            procs.append(subprocess.Popen(up, stdout=subprocess.PIPE, text=True))  # noqa: ASYNC220
            assert procs[0].stdout is not None
            procs[0].stdout.readline()  # "bench upstream ready ..."
            runner = web.AppRunner(_app(args, upstream, Path(tmp)), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", gw_port, backlog=4096).start()
            tune()  # as `pixgate serve` does once it has started
            await _held(args, runner, gw_port, procs)
    finally:
        if runner is not None:
            await runner.cleanup()
        for proc in procs:
            proc.kill()
            proc.wait()


async def _held(
    args: argparse.Namespace,
    runner: web.AppRunner,
    port: int,
    procs: list[subprocess.Popen[str]],
) -> None:
    url = f"http://127.0.0.1:{port}/v1/images/generations"
    cmd = [sys.executable, "-m", "bench.poll_memory", "--client", url]
    cmd += ["--jobs", str(args.jobs), "--ramp", str(args.ramp)]
    pipe = subprocess.PIPE
    client = subprocess.Popen(  # noqa: ASYNC220 (before the load, as the upstream)
        cmd, stdin=pipe, stdout=pipe, stderr=subprocess.DEVNULL, text=True
    )
    procs.append(client)
    assert client.stdin is not None and client.stdout is not None
    loop = asyncio.get_running_loop()
    print(await loop.run_in_executor(None, client.stdout.readline), end="")
    await asyncio.sleep(0.5)
    gc.collect()
    idle = status_kib(os.getpid(), "VmRSS")
    if not args.rss_only:
        tracemalloc.start(args.depth)
        types_before = heapwalk.types_now()
        baseline = {id(o) for o in gc.get_objects()}
        before = tracemalloc.take_snapshot()
    if args.mallocstats:
        heapwalk.mallocstats()
    if not args.rss_only:
        start_heap = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
    reset_peak(os.getpid())
    client.stdin.write("go\n")
    client.stdin.flush()
    await loop.run_in_executor(None, client.stdout.readline)
    handling = await _handling(runner, args.jobs)
    await asyncio.sleep(args.every + 1)  # every job has polled once
    held = status_kib(os.getpid(), "VmRSS")
    peak = max(status_kib(os.getpid(), "VmHWM"), held)
    handling = min(handling, await _handling(runner, 0))
    n = args.jobs
    print(
        f"RSS idle {idle / 1024:.1f} MiB, with {n} jobs {held / 1024:.1f} MiB "
        f"({(held - idle) / n:.1f} KiB/job), peak {peak / 1024:.1f} MiB "
        f"({(peak - idle) / n:.1f} KiB/job); {handling} requests in at the end"
    )
    if args.mallocstats:
        heapwalk.mallocstats()
    if args.timeline:
        await _timeline(runner, idle)
    if not args.rss_only:
        heap, peak_heap = tracemalloc.get_traced_memory()
        print(
            f"traced heap: {(heap - start_heap) / n:.0f} B/job held, at its peak "
            f"{(peak_heap - start_heap) / n:.0f} B/job (what the submits and polls had at once)"
        )
        after = tracemalloc.take_snapshot()
        types_after = heapwalk.types_now()
        heapwalk.chains(args.chain)
        if args.walk:
            heapwalk.walk(baseline)
        tracemalloc.stop()
        heapwalk.report(before, after, types_before, types_after, n, args.top)


async def _timeline(runner: web.AppRunner, idle: int, limit: float = 150.0) -> None:
    """Every second until no request is in (at most `limit` s): RSS over idle, the peak so
    far, pymalloc's blocks, and the collector's counts and collections per generation."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        await asyncio.sleep(1.0)
        handling = await _handling(runner, 0)
        rss, peak = status_kib(os.getpid(), "VmRSS"), status_kib(os.getpid(), "VmHWM")
        runs = "/".join(str(s["collections"]) for s in gc.get_stats())
        py, lib = heapwalk.allocators()
        print(
            f"  {time.monotonic() - start:5.1f} s {handling:5d} in  RSS {rss >> 10:3d} MiB "
            f"(peak {peak >> 10})  pymalloc {py['arenas']} arenas, {py['allocated'] >> 20} "
            f"MiB used, {py['available'] >> 20} free  glibc {lib['uordblks'] >> 20} MiB used, "
            f"{lib['fordblks'] >> 20} free, {lib['hblkhd'] >> 20} mmapped  gc {runs}",
            flush=True,
        )
        if not handling:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--ramp", type=float, default=0.0, help="submits spread over (s)")
    parser.add_argument("--every", type=float, default=2.0, help="poll interval (s)")
    parser.add_argument("--floor", action="store_true", help="the floor instead of pixgate")
    parser.add_argument("--rss-only", action="store_true", help="no tracemalloc")
    parser.add_argument("--mallocstats", action="store_true", help="the allocators' totals")
    parser.add_argument("--timeline", action="store_true", help="RSS every s until done")
    parser.add_argument("--walk", action="store_true", help="what one request holds")
    parser.add_argument("--chain", action="store_true", help="the chain's frames and locals")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--depth", type=int, default=8, help="tracemalloc frames")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from engine.eventloop import loop_factory

    with asyncio.Runner(loop_factory=loop_factory("uvloop")[0]) as runner:
        if args.client:
            runner.run(client_main(args.client, args.jobs, args.ramp))
        else:
            runner.run(measure(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
