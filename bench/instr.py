"""`python -m bench.instr`: instructions per request under callgrind, for A/B on a busy machine.

CPU time drifts with the machine's load (see bench/README.md); the number of instructions a
request executes does not. This runs one process holding a client, the test upstream
(bench/upstream.py) and pixgate's app (or the floor, bench/nullproxy.py) on one uvloop, under
`valgrind --tool=callgrind --instr-atstart=no`, and switches counting on only around the
measured requests (`callgrind_control -i on/off`, while the loop is blocked so no request is
half done). Start-up and warm-up are not counted; the client and upstream are, as in
bench/inproc.py: `direct` (the client posting straight to the upstream) counts them alone, so
each gateway's own figure is its count less `direct`'s. `--cache-sim` adds callgrind's cache
and branch simulation, to see why an instruction of one gateway costs more than another's.

`--scenario redis` counts the `redis` scenario of bench/run.py: the small answer with the
openai key under `max_concurrency_per_key`, through pixgate with memory state and with Redis
state (a `redis-server` started on a free loopback port for each count, outside valgrind, so
Redis's own work is not counted), and prints what Redis state adds per request. Work done
once per second of wall time (success counts, the health cache's reads) weighs about 50 times
more per request here than at full speed: valgrind slows the process, not the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# scenario: (requests, concurrency); the download scenario moves ~1.5 MB per request.
DEFAULTS = {"small": (640, 64), "download": (160, 16), "redis": (640, 16)}
SYSTEMS = ("pixgate", "pixgate-redis", "floor", "direct")
# --cache-sim: callgrind's cache model set to this machine's per-core sizes (L2 as the last
# level: a miss there goes to the shared L3, which other processes share too).
CACHE_SIM = (
    "--cache-sim=yes",
    "--branch-sim=yes",
    "--I1=32768,8,64",
    "--D1=49152,12,64",
    "--LL=2097152,16,64",
)


def real_python() -> str:
    """The interpreter binary itself: valgrind cannot run pyenv's shim (a shell script)."""
    exe = Path(os.path.realpath(sys.executable))
    if exe.read_bytes()[:2] != b"#!":
        return str(exe)
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return os.path.realpath(Path(sys.base_prefix) / "bin" / name)


def _toggle(state: str) -> None:
    subprocess.run(
        ["callgrind_control", "-i", state, str(os.getpid())],
        check=True,
        capture_output=True,
        timeout=60,
    )


async def _drive(
    tree: Path, system: str, scenario: str, requests: int, concurrency: int, redis_port: int
) -> None:
    """The measured process: engine imported from `tree`, bench from this checkout."""
    import logging

    import aiohttp

    from engine import logsetup
    from engine.app import create_app
    from engine.gctune import tune
    from engine.settings import Settings

    from . import nullproxy, redisserver
    from .heavy import limited_config
    from .inproc import _serve, gateway_env, post_all
    from .procs import free_port
    from .run import assemble_config
    from .scenarios import by_name
    from .upstream import Upstream

    logsetup.configure("INFO")  # pixgate logs as `pixgate serve` does (its handler, formatter)
    devnull = open(os.devnull, "w")  # noqa: ASYNC230, SIM115 (before serving; for the process)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    body = by_name(scenario)[0].body()
    ports = [free_port() for _ in range(2)]
    upstream = f"http://127.0.0.1:{ports[0]}"
    with tempfile.TemporaryDirectory() as tmp:
        env = gateway_env(upstream, Path(tmp))
        if system in ("floor", "direct"):
            app = nullproxy.make_app(upstream)  # `direct` serves it but sends past it
        else:
            config = assemble_config(tree, Path(tmp) / "config")
            if scenario == "redis":  # the key limited, as in bench/run.py's redis scenario
                config = limited_config(config, Path(tmp) / "config-limited")
            if system == "pixgate-redis":
                env.update(redisserver.gateway_env(redis_port))
                # Under valgrind a call takes ~50 times as long: past the default 0.25 s the
                # gateway would count its fall-back to local state instead.
                env["PIXGATE_REDIS_TIMEOUT"] = "30"
            app = create_app(Settings.from_env(env, config_dir=config, watch=False))
        runners = [await _serve(Upstream(upstream).app(), ports[0]), await _serve(app, ports[1])]
        tune()  # as `pixgate serve` does once it has started
        port = ports[0] if system == "direct" else ports[1]
        url = f"http://127.0.0.1:{port}/v1/images/generations"
        try:
            async with aiohttp.ClientSession() as http:
                await post_all(http, url, body, 5 * concurrency, concurrency)  # warm-up
                _toggle("on")
                await post_all(http, url, body, requests, concurrency)
                _toggle("off")
        finally:
            for runner in runners:
                await runner.cleanup()
    print(f"engine from {Path(sys.modules['engine.app'].__file__ or '').parent}", file=sys.stderr)


@contextmanager
def _redis_server(folder: Path) -> Iterator[int]:
    """A redis-server on a free loopback port (stopped on exit): its port."""
    from . import redisserver
    from .procs import free_port

    binary = redisserver.binary()
    if binary is None:
        raise SystemExit(f"--scenario redis needs redis-server ({redisserver.INSTALL})")
    port = free_port()
    server = subprocess.Popen(
        redisserver.command(binary, port, folder / "redis"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):  # 10 s
            if redisserver.answers(port) or server.poll() is not None:
                break
            time.sleep(0.02)
        if not redisserver.answers(port):
            raise SystemExit("redis-server did not start")
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def measure(
    tree: Path,
    system: str,
    scenario: str,
    requests: int,
    concurrency: int,
    cache_sim: bool = False,
    keep: Path | None = None,
) -> dict[str, float]:
    """callgrind's events per request of `system` (one of SYSTEMS) with `tree`'s engine: `Ir`
    (instructions) and, with `cache_sim`, the cache and branch events (`I1mr`, `D1mr`, ...)."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        redis_port = 0
        if system == "pixgate-redis":
            redis_port = stack.enter_context(_redis_server(Path(tmp)))
        out = Path(tmp) / "callgrind.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            *(CACHE_SIM if cache_sim else ()),
            f"--callgrind-out-file={out}",
            real_python(),
            "-m",
            "bench.instr",
            "--child",
            system,
            "--scenario",
            scenario,
            "--requests",
            str(requests),
            "-c",
            str(concurrency),
            "--pixgate-root",
            str(tree),
            "--redis-port",
            str(redis_port),
        ]
        env = {
            **os.environ,
            # str hashes are salted per process; a fixed seed takes out ~0.7% run-to-run spread
            "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
        text = out.read_text() if out.exists() else ""
        if keep is not None and out.exists():
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(out, keep / f"callgrind.out.{system}.{tree.name}")
        names = re.search(r"^events: (.+)$", text, re.M)
        totals = re.search(r"^totals: (.+)$", text, re.M)
        if done.returncode != 0 or names is None or totals is None:
            raise SystemExit(f"{system} with {tree} failed:\n{done.stderr[-3000:]}")
    per_request = requests // concurrency * concurrency
    counts = [int(n) for n in totals.group(1).split()]
    return {name: n / per_request for name, n in zip(names.group(1).split(), counts, strict=True)}


# What the cache-sim table prints, from callgrind's events (D1 and LL misses: reads + writes).
CACHE_ROWS = {
    "instructions": ("Ir",),
    "data accesses": ("Dr", "Dw"),
    "I1 misses": ("I1mr",),
    "D1 misses": ("D1mr", "D1mw"),
    "L2 misses, instructions": ("ILmr",),
    "L2 misses, data": ("DLmr", "DLmw"),
    "conditional branches": ("Bc",),
    "mispredicted conditional": ("Bcm",),
    "indirect branches": ("Bi",),
    "mispredicted indirect": ("Bim",),
}


def cache_table(results: dict[str, dict[str, float]]) -> str:
    """Per request, each system's events and (when `direct` was counted) its own share: its
    events minus the client's and upstream's, which `direct` alone carries."""
    base = results.get("direct")
    own = {k: v for k, v in results.items() if k != "direct"} if base else {}
    heads = [*results, *(f"{k} own" for k in own)]
    lines = [f"  {'per request':26}" + "".join(f"{h:>16}" for h in heads)]
    for row, events in CACHE_ROWS.items():
        cells = [sum(r.get(e, 0.0) for e in events) for r in results.values()]
        if base is not None:
            base_value = sum(base.get(e, 0.0) for e in events)
            cells += [sum(r.get(e, 0.0) for e in events) - base_value for r in own.values()]
        lines.append(f"  {row:26}" + "".join(f"{c:>16,.0f}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", choices=sorted(DEFAULTS), default="small")
    parser.add_argument("--requests", type=int, help="measured requests (default per scenario)")
    parser.add_argument("-c", "--concurrency", type=int, help="requests in flight")
    parser.add_argument("--pixgate-root", type=Path, default=ROOT, help="engine tree (A)")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="a second engine tree (B)")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor's and direct's figures"
    )
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="simulate caches and branch prediction too (about 2x slower)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep callgrind's output files (callgrind_annotate)",
    )
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--redis-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    requests = args.requests or DEFAULTS[args.scenario][0]
    concurrency = args.concurrency or DEFAULTS[args.scenario][1]
    if args.child:
        sys.path.insert(0, str(args.pixgate_root.resolve()))  # engine from that tree
        from engine.eventloop import loop_factory

        with asyncio.Runner(loop_factory=loop_factory("uvloop")[0]) as runner:
            runner.run(
                _drive(
                    args.pixgate_root.resolve(),
                    args.child,
                    args.scenario,
                    requests,
                    concurrency,
                    args.redis_port,
                )
            )
        return 0
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    print(
        f"{args.scenario}: {requests} requests at concurrency {concurrency}, "
        "instructions per request (client + upstream + system, one process)"
    )
    # The redis scenario: each tree with Redis state, and with memory state for what it adds.
    system = "pixgate-redis" if args.scenario == "redis" else "pixgate"
    counted: dict[str, dict[str, float]] = {}  # by label: A, B, floor, direct
    trees = [args.pixgate_root] + ([args.compare] if args.compare else [])
    for label, tree in zip("AB", trees, strict=False):
        counted[label] = measure(
            tree.resolve(), system, args.scenario, requests, concurrency, args.cache_sim, args.keep
        )
        print(f"  {system} {tree}: {counted[label]['Ir']:,.0f}", flush=True)
        if system == "pixgate-redis":
            memory = measure(tree.resolve(), "pixgate", args.scenario, requests, concurrency)
            added = counted[label]["Ir"] - memory["Ir"]
            print(f"    with memory state: {memory['Ir']:,.0f}; Redis state adds {added:+,.0f}")
    if args.compare:
        a, b = counted["A"]["Ir"], counted["B"]["Ir"]
        print(f"  difference (B - A): {b - a:+,.0f} ({(b - a) / a:+.1%})")
    if not args.no_floor and system == "pixgate":
        for other in ("floor", "direct"):
            counted[other] = measure(
                trees[0].resolve(),
                other,
                args.scenario,
                requests,
                concurrency,
                args.cache_sim,
                args.keep,
            )
        first, floor, direct = (counted[k]["Ir"] for k in ("A", "floor", "direct"))
        print(
            f"  floor (bench/nullproxy.py): {floor:,.0f}; pixgate A / floor {first / floor:.2f}\n"
            f"  direct (client and upstream alone): {direct:,.0f}; without them, pixgate A "
            f"{first - direct:,.0f} / floor {floor - direct:,.0f} = "
            f"{(first - direct) / (floor - direct):.2f}"
        )
    if args.cache_sim:
        print(cache_table(counted))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
