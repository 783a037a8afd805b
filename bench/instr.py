"""`python -m bench.instr`: instructions per request under callgrind, for A/B on a busy machine.

CPU time drifts with the machine's load (see bench/README.md); the number of instructions a
request executes does not. This runs one process holding a client, the test upstream
(bench/upstream.py) and pixgate's app (or the floor, bench/nullproxy.py) on one uvloop, under
`valgrind --tool=callgrind --instr-atstart=no`, and switches counting on only around the
measured requests (`callgrind_control -i on/off`, while the loop is blocked so no request is
half done). Start-up and warm-up are not counted; the client and upstream are, as in
bench/inproc.py, so subtract the floor's figure to see pixgate's own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# scenario: (requests, concurrency); the download scenario moves ~1.5 MB per request.
DEFAULTS = {"small": (640, 64), "download": (160, 16)}


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


async def _drive(tree: Path, system: str, scenario: str, requests: int, concurrency: int) -> None:
    """The measured process: engine imported from `tree`, bench from this checkout."""
    import logging

    import aiohttp

    from engine.app import create_app
    from engine.gctune import tune
    from engine.settings import Settings

    from . import nullproxy
    from .inproc import HEADERS, _serve, gateway_env
    from .procs import free_port
    from .run import assemble_config
    from .scenarios import by_name
    from .upstream import Upstream

    logging.basicConfig(level="INFO", filename=os.devnull)  # pixgate logs as it would serving
    body = by_name(scenario)[0].body()
    ports = [free_port() for _ in range(2)]
    upstream = f"http://127.0.0.1:{ports[0]}"
    with tempfile.TemporaryDirectory() as tmp:
        env = gateway_env(upstream, Path(tmp))
        if system == "floor":
            app = nullproxy.make_app(upstream)
        else:
            config = assemble_config(tree, Path(tmp) / "config")
            app = create_app(Settings.from_env(env, config_dir=config, watch=False))
        runners = [await _serve(Upstream(upstream).app(), ports[0]), await _serve(app, ports[1])]
        tune()  # as `pixgate serve` does once it has started
        url = f"http://127.0.0.1:{ports[1]}/v1/images/generations"
        try:
            async with aiohttp.ClientSession() as http:

                async def worker(count: int) -> None:
                    for _ in range(count):
                        async with http.post(url, data=body, headers=HEADERS) as resp:
                            if resp.status != 200:
                                raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
                            await resp.read()

                await asyncio.gather(*(worker(5) for _ in range(concurrency)))  # warm-up
                _toggle("on")
                await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
                _toggle("off")
        finally:
            for runner in runners:
                await runner.cleanup()
    print(f"engine from {Path(sys.modules['engine.app'].__file__ or '').parent}", file=sys.stderr)


def measure(tree: Path, system: str, scenario: str, requests: int, concurrency: int) -> float:
    """Instructions per request of `system` ('pixgate' or 'floor') with `tree`'s engine."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
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
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
        totals = re.search(r"^totals: (\d+)", out.read_text(), re.M) if out.exists() else None
        if done.returncode != 0 or totals is None:
            raise SystemExit(f"{system} with {tree} failed:\n{done.stderr[-3000:]}")
    per_request = requests // concurrency * concurrency
    return int(totals.group(1)) / per_request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", choices=sorted(DEFAULTS), default="small")
    parser.add_argument("--requests", type=int, help="measured requests (default per scenario)")
    parser.add_argument("-c", "--concurrency", type=int, help="requests in flight")
    parser.add_argument("--pixgate-root", type=Path, default=ROOT, help="engine tree (A)")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="a second engine tree (B)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor's figure")
    parser.add_argument("--child", choices=["pixgate", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    requests = args.requests or DEFAULTS[args.scenario][0]
    concurrency = args.concurrency or DEFAULTS[args.scenario][1]
    if args.child:
        sys.path.insert(0, str(args.pixgate_root.resolve()))  # engine from that tree
        from engine.eventloop import loop_factory

        with asyncio.Runner(loop_factory=loop_factory("uvloop")[0]) as runner:
            runner.run(
                _drive(
                    args.pixgate_root.resolve(), args.child, args.scenario, requests, concurrency
                )
            )
        return 0
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    print(
        f"{args.scenario}: {requests} requests at concurrency {concurrency}, "
        "instructions per request (client + upstream + system, one process)"
    )
    results: dict[str, float] = {}
    trees = [args.pixgate_root] + ([args.compare] if args.compare else [])
    for tree in trees:
        results[str(tree)] = measure(
            tree.resolve(), "pixgate", args.scenario, requests, concurrency
        )
        print(f"  pixgate {tree}: {results[str(tree)]:,.0f}", flush=True)
    if args.compare:
        a, b = results[str(trees[0])], results[str(trees[1])]
        print(f"  difference (B - A): {b - a:+,.0f} ({(b - a) / a:+.1%})")
    if not args.no_floor:
        floor = measure(trees[0].resolve(), "floor", args.scenario, requests, concurrency)
        first = results[str(trees[0])]
        print(
            f"  floor (bench/nullproxy.py): {floor:,.0f}; pixgate A / floor {first / floor:.2f}, "
            f"pixgate's own {first - floor:,.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
