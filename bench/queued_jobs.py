"""Memory of many async jobs held at once (issue 17): `python -m bench.queued_jobs`.

Starts one `pixgate serve` on the shipped config, submits N async jobs
(`POST /v1/images/generations?async=true`) on the offline `demo-async` route with a long
render delay, so that all N are queued or running together, and reads the gateway's RSS from
/proc: idle, with the N jobs held, and the peak. Then it waits for every job to end and
checks that each one succeeded. Memory state (no Redis): records and results in the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from . import procstat
from .procs import Proc, free_port

REPO = Path(__file__).resolve().parent.parent


async def _submit(http: aiohttp.ClientSession, base: str, delay: float, ids: list[str]) -> None:
    body = {"model": "demo-async", "prompt": "queued", "size": "64x64", "delay": delay}
    async with http.post(f"{base}/v1/images/generations?async=true", json=body) as resp:
        payload = await resp.json()
        if resp.status != 202:
            raise RuntimeError(f"submit answered {resp.status}: {payload}")
        ids.append(payload["id"])


async def _final(http: aiohttp.ClientSession, base: str, job_id: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        async with http.get(f"{base}/v1/images/jobs/{job_id}?wait=30s") as resp:
            status = str((await resp.json())["status"])
        if status in ("succeeded", "failed", "cancelled"):
            return status
    return "timeout"


async def measure(jobs: int, delay: float, concurrency: int) -> dict[str, object]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="pixgate-bench-jobs-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PIXGATE_STORAGE_DIR": str(Path(tmp) / "files"),
            "PIXGATE_JOBS_TOTAL": str(jobs + 10),
            "PIXGATE_JOBS_PER_CLIENT": str(jobs + 10),
            "PIXGATE_LOG_LEVEL": "WARNING",
        }
        cmd = [sys.executable, "-m", "engine", "serve", "--config", str(REPO), "--port",
               str(port), "--no-watch"]  # fmt: skip
        proc = Proc("pixgate", cmd, Path(tmp) / "pixgate.log", env=env)
        try:
            proc.wait_http(f"{base}/health", timeout=30)
            await asyncio.sleep(1.0)
            idle = procstat.status_kib(proc.pid, "VmRSS")
            ids: list[str] = []
            gate = asyncio.Semaphore(concurrency)
            timeout = aiohttp.ClientTimeout(total=180)
            conn = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(timeout=timeout, connector=conn) as http:

                async def one() -> None:
                    async with gate:
                        await _submit(http, base, delay, ids)

                started = time.monotonic()
                await asyncio.gather(*(one() for _ in range(jobs)))
                submitted_in = time.monotonic() - started
                held = procstat.status_kib(proc.pid, "VmRSS")
                finals = await asyncio.gather(*(_final(http, base, i) for i in ids))
            peak = procstat.status_kib(proc.pid, "VmHWM")
            after = procstat.status_kib(proc.pid, "VmRSS")
        finally:
            proc.stop()
    return {
        "jobs": jobs,
        "delay_s": delay,
        "submitted_in_s": round(submitted_in, 2),
        "succeeded": finals.count("succeeded"),
        "other": len(finals) - finals.count("succeeded"),
        "idle_rss_mib": round(idle / 1024, 1),
        "held_rss_mib": round(held / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "after_rss_mib": round(after / 1024, 1),
        "per_job_kib": round((held - idle) / jobs, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=20.0, help="demo render time, s (≤ 30)")
    parser.add_argument("--concurrency", type=int, default=50, help="submits in flight")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.jobs, args.delay, args.concurrency))
    print(json.dumps(result))
    return 0 if result["other"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
