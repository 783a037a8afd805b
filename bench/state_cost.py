"""What shared state adds per upstream attempt: memory against a loopback Redis.

    python -m bench.state_cost [--pairs 3000] [--loop uvloop|asyncio]

Runs the state calls one attempt makes (acquire: breaker, key choice, lease; then settle with
a success, sent off the request's path as the gateway does) in a loop, with no HTTP around
them, and reports per attempt the p50 and p99 wall time of the acquire (what a request waits
for) and of acquire + settle, and the CPU time of this process (the gateway's side, the
batched background writes included; Redis's own CPU is not counted). Two policies: the
default (no per-key concurrency limit) and `max_concurrency_per_key: 64`, which needs a lease
in Redis per attempt. Back to back, a lease's release rides on the next acquire; the row
"release alone" lets the event loop turn after each settle (as the response is written in the
gateway), so the release goes out in a write of its own, as with one request at a time.

Needs `redis-server` on PATH; it starts one on a free loopback port and stops it. A
whole-gateway cell under wrk adds HTTP noise to a difference of tens of microseconds, so this
measures the state calls alone; the `redis` scenario of `python -m bench.run` is that
whole-gateway cell. To measure another tree's engine, run this file with that tree first on
PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

from engine.dsl.expressions import Expr
from engine.dsl.spec import AuthSpec, ErrorRule, ProviderPolicy, ProviderSpec
from engine.state import MemoryState
from engine.state.base import StateBackend
from engine.state.config import RedisConfig
from engine.state.redisstate import RedisState

PROVIDER = ProviderSpec(
    id="bench",
    title="bench",
    base_url="http://x",
    auth=AuthSpec(keys=tuple(f"sk-bench-{i:02d}-0123456789" for i in range(4))),
    models={},
    tasks={},
    errors=(ErrorRule(Expr("a"), "upstream"),),
    error_message=Expr("message"),
)
LIMITED = ProviderPolicy(max_concurrency_per_key=64)
# name: (policy, loop turns after each settle)
POLICIES = {
    "default": (ProviderPolicy(), 0),
    "limit 64": (LIMITED, 0),
    "limit 64, release alone": (LIMITED, 3),
}


async def measure(
    state: StateBackend, policy: ProviderPolicy, pairs: int, turns: int = 0
) -> dict[str, float]:
    acquire_s: list[float] = []
    pair_s: list[float] = []
    for _ in range(200):  # warm-up: connections, script caches
        await state.settle(await state.acquire(PROVIDER, policy), policy, None, wait=False)
    await asyncio.sleep(0.01)
    cpu = time.process_time()
    for _ in range(pairs):
        start = time.perf_counter()
        grant = await state.acquire(PROVIDER, policy)
        acquired = time.perf_counter()
        await state.settle(grant, policy, None, wait=False)  # as the gateway settles a success
        done = time.perf_counter()
        acquire_s.append(acquired - start)
        pair_s.append(done - start)
        for _ in range(turns):
            await asyncio.sleep(0)
    cpu_per = (time.process_time() - cpu) / pairs

    def q(values: list[float], n: int) -> float:
        return statistics.quantiles(values, n=100)[n - 1] * 1e6

    return {
        "acquire p50 µs": q(acquire_s, 50),
        "acquire p99 µs": q(acquire_s, 99),
        "acquire+settle p50 µs": q(pair_s, 50),
        "CPU per attempt µs": cpu_per * 1e6,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def compare(port: int, pairs: int) -> dict[str, dict[str, float]]:
    redis = RedisState(
        RedisConfig(f"redis://127.0.0.1:{port}/0", "bench-secret-0123456789", "bench")
    )
    end = time.monotonic() + 10
    while not await redis.ready():
        if time.monotonic() > end:
            raise SystemExit("redis-server did not answer")
        await asyncio.sleep(0.05)
    await redis.start()  # as the gateway does: lease renewal, and the cache's subscription
    cache = getattr(redis, "cache", None)  # absent from trees before the cache
    while cache is not None and not cache.live:
        if time.monotonic() > end:
            raise SystemExit("the change channel was not subscribed")
        await asyncio.sleep(0.01)
    rows: dict[str, dict[str, float]] = {}
    for name, (policy, turns) in POLICIES.items():
        rows[f"memory, {name}"] = await measure(MemoryState(), policy, pairs, turns)
        rows[f"redis, {name}"] = await measure(redis, policy, pairs, turns)
    await redis.close()
    return rows


def main(pairs: int, loop: str) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            if loop == "uvloop":
                import uvloop

                rows = uvloop.run(compare(port, pairs))
            else:
                rows = asyncio.run(compare(port, pairs))
        finally:
            server.terminate()
            server.wait(timeout=5)
    names = list(next(iter(rows.values())))
    print(f"event loop: {loop}; {pairs} attempts per row; load average {load()}")
    print("| backend, policy | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for backend, row in rows.items():
        print(f"| {backend} | " + " | ".join(f"{row[n]:.0f}" for n in names) + " |")
    for policy in POLICIES:
        added = {n: rows[f"redis, {policy}"][n] - rows[f"memory, {policy}"][n] for n in names}
        cells = " | ".join(f"{added[n]:.0f}" for n in names)
        print(f"| added by Redis, {policy} | {cells} |")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    main(args.pairs, args.loop)
