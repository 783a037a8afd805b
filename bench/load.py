"""Load generation: `wrk` with a Lua POST script, or a small aiohttp load generator.

Both are closed-loop: `connections` clients each send a request, wait for the answer, and send
the next, for `duration` seconds; only requests that finish inside the window count (as in
wrk). The aiohttp generator runs in its own process (`python -m bench.load ...`, printing one
JSON line) and also does what wrk cannot:

- `--chain`: POST, then GET the `data[0].url` of the answer (a direct client of the `download`
  scenario, which must fetch the image itself); one latency per pair.
- `--batch N`: N requests at once, each once, and wait for all (the 1,000 polling jobs).
  With `--rounds R` each of the N clients sends R requests one after another (closed loop, a
  fixed count), and with `--ramp S` client i starts at i*S/N seconds, so the N requests open
  at a steady rate instead of in one burst (the many open requests and polling jobs). The
  result counts the most requests open at once (`peak_open`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.eventloop import loop_factory

MARK = "BENCHJSON "

LUA = """-- written by bench/load.py
local f = assert(io.open(%(body)q, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
%(headers)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"status":%%d,"timeout":%%d,"mean_us":%%.1f,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


@dataclass(slots=True)
class LoadResult:
    tool: str
    connections: int
    duration_s: float
    requests: int
    errors: int  # non-2xx answers, socket errors and timeouts
    rps: float  # successful answers per second
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_version() -> str | None:
    if not wrk_available():
        return None
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).strip().splitlines()[0] if out.stdout + out.stderr else "wrk"


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_wrk_script(workdir: Path, name: str, body: bytes, headers: Mapping[str, str]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    body_path = workdir / f"{name}.body.json"
    body_path.write_bytes(body)
    header_lines = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
    )
    script = LUA.replace("%(body)q", _lua_string(str(body_path.resolve())))
    script = script.replace("%(headers)s", header_lines).replace("%(mark)s", MARK)
    script = script.replace("%%", "%")
    path = workdir / f"{name}.lua"
    path.write_text(script)
    return path


def run_wrk(
    url: str,
    script: Path,
    connections: int,
    duration: float,
    cpus: str | None,
    timeout_s: float = 10.0,
) -> LoadResult:
    """One wrk run (one thread: it is pinned to one core anyway)."""
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",  # wrk 4.1 takes whole seconds
        f"--timeout={int(timeout_s)}s",
        "-s",
        str(script),
        url,
    ]
    if cpus is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + timeout_s + 30, check=False
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        text = (out.stderr or out.stdout).strip().splitlines()
        raise RuntimeError(f"wrk gave no result (rc={out.returncode}): {text[:1]}")
    raw = json.loads(line[len(MARK) :])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    seconds = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["status"]  # wrk counts non-2xx/3xx answers as requests too
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=seconds,
        requests=ok,
        errors=errors,
        rps=ok / seconds if seconds else 0.0,
        mean_ms=raw["mean_us"] / 1000,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        detail={k: raw[k] for k in ("connect", "read", "write", "status", "timeout", "bytes")},
    )


def run_python(
    url: str,
    body_file: Path,
    headers: Mapping[str, str],
    connections: int,
    duration: float,
    cpus: str | None,
    *,
    chain: bool = False,
    batch: int = 0,
    rounds: int = 1,
    ramp_s: float = 0.0,
    timeout_s: float = 60.0,
) -> LoadResult:
    """The aiohttp load generator, in its own (pinned) process."""
    cmd = [sys.executable, "-m", "bench.load", "--url", url, "--body-file", str(body_file)]
    cmd += ["-c", str(connections), "-d", str(duration), "--timeout", str(timeout_s)]
    for k, v in headers.items():
        cmd += ["--header", f"{k}: {v}"]
    if chain:
        cmd.append("--chain")
    if batch:
        cmd += ["--batch", str(batch), "--rounds", str(rounds), "--ramp", str(ramp_s)]
    if cpus is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=duration + ramp_s + rounds * timeout_s + 60,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"load generator failed (rc={out.returncode}): {out.stderr[-2000:]}")
    raw = json.loads(line[len(MARK) :])
    return LoadResult(**raw)


# --- the aiohttp load generator (runs in its own process) ---------------------------------


def _percentile(sorted_ms: Sequence[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    index = min(len(sorted_ms) - 1, max(0, math.ceil(q / 100 * len(sorted_ms)) - 1))
    return sorted_ms[index]


def start_offset(index: int, clients: int, ramp_s: float) -> float:
    """When client `index` of `clients` starts: evenly over `ramp_s` seconds, the first at 0."""
    return ramp_s * index / clients if clients > 0 else 0.0


async def _generate(args: argparse.Namespace) -> LoadResult:
    import aiohttp

    body: bytes = args.body
    headers = {"Content-Type": "application/json"}
    for item in args.header:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    latencies: list[float] = []
    errors: dict[str, int] = {"status": 0, "socket": 0, "timeout": 0}
    gauge = {"open": 0, "peak_open": 0}
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> bool:
            async with session.post(args.url, data=body, headers=headers) as resp:
                payload = await resp.read()
                if resp.status >= 400:
                    errors["status"] += 1
                    return False
            if args.chain:
                link = json.loads(payload)["data"][0]["url"]
                async with session.get(link) as image:
                    await image.read()
                    if image.status >= 400:
                        errors["status"] += 1
                        return False
            return True

        async def timed(record_until: float) -> None:
            started = time.perf_counter()
            gauge["open"] += 1
            gauge["peak_open"] = max(gauge["peak_open"], gauge["open"])
            try:
                ok = await one()
            except TimeoutError:
                errors["timeout"] += 1
                return
            except aiohttp.ClientError:
                errors["socket"] += 1
                await asyncio.sleep(0.01)
                return
            finally:
                gauge["open"] -= 1
            finished = time.perf_counter()
            if ok and finished <= record_until:
                latencies.append((finished - started) * 1000)

        if args.batch:

            async def client(index: int) -> None:
                await asyncio.sleep(start_offset(index, args.batch, args.ramp))
                for _ in range(args.rounds):
                    await timed(math.inf)

            start = time.perf_counter()
            await asyncio.gather(*(client(i) for i in range(args.batch)))
            elapsed = time.perf_counter() - start
        else:
            start = time.perf_counter()
            end = start + args.duration

            async def worker() -> None:
                while time.perf_counter() < end:
                    await timed(end)

            await asyncio.gather(*(worker() for _ in range(args.connections)))
            elapsed = args.duration
    ordered = sorted(latencies)
    return LoadResult(
        tool="aiohttp-chain" if args.chain else "aiohttp",
        connections=args.batch or args.connections,
        duration_s=elapsed,
        requests=len(ordered),
        errors=sum(errors.values()),
        rps=len(ordered) / elapsed if elapsed else 0.0,
        mean_ms=sum(ordered) / len(ordered) if ordered else 0.0,
        p50_ms=_percentile(ordered, 50),
        p90_ms=_percentile(ordered, 90),
        p99_ms=_percentile(ordered, 99),
        max_ms=ordered[-1] if ordered else 0.0,
        detail={**errors, "peak_open": gauge["peak_open"], "rounds": args.rounds or 1},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="closed-loop aiohttp load generator")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--chain", action="store_true")
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1, help="with --batch: requests per client")
    parser.add_argument("--ramp", type=float, default=0.0, help="with --batch: start spread (s)")
    args = parser.parse_args(argv)
    args.body = Path(args.body_file).read_bytes()
    host = args.url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        print("bench.load: loopback targets only", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=loop_factory("auto")[0]) as runner:
        result = runner.run(_generate(args))
    print(MARK + json.dumps(result.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
