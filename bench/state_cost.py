"""What shared state adds per upstream attempt: memory against a loopback Redis.

    python -m bench.state_cost [--pairs 3000]

Runs the state calls one attempt makes (acquire: breaker, key choice, lease; then settle with
a success) in a loop, with no HTTP around them, and reports per attempt the p50 and p99 wall
time of the acquire (what a request waits for) and of acquire + settle, and the CPU time of
this process (the gateway's side; Redis's own CPU is not counted). Needs `redis-server` on
PATH; it starts one on a free loopback port and stops it. A whole-gateway cell under wrk
would add HTTP noise to a difference of tens of microseconds, so this measures the state calls
alone.
"""

from __future__ import annotations

import argparse
import asyncio
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
POLICY = ProviderPolicy(max_concurrency_per_key=64)


async def measure(state: StateBackend, pairs: int) -> dict[str, float]:
    acquire_s: list[float] = []
    pair_s: list[float] = []
    for _ in range(200):  # warm-up: connections, script caches
        await state.settle(await state.acquire(PROVIDER, POLICY), POLICY, None)
    cpu = time.process_time()
    for _ in range(pairs):
        start = time.perf_counter()
        grant = await state.acquire(PROVIDER, POLICY)
        acquired = time.perf_counter()
        await state.settle(grant, POLICY, None)
        done = time.perf_counter()
        acquire_s.append(acquired - start)
        pair_s.append(done - start)
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
    rows = {"memory": await measure(MemoryState(), pairs)}
    rows["redis"] = await measure(redis, pairs)
    await redis.close()
    return rows


def main(pairs: int) -> None:
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
            rows = asyncio.run(compare(port, pairs))
        finally:
            server.terminate()
            server.wait(timeout=5)
    names = list(rows["memory"])
    print("| backend | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for backend, row in rows.items():
        print(f"| {backend} | " + " | ".join(f"{row[n]:.0f}" for n in names) + " |")
    added = {n: rows["redis"][n] - rows["memory"][n] for n in names}
    print("| added by Redis | " + " | ".join(f"{added[n]:.0f}" for n in names) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3000)
    main(parser.parse_args().pairs)
