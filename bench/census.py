"""`python -m bench.census`: what a small request does, counted exactly, for A/B of engine trees.

Per request: timers armed (`loop.call_at`, which `call_later` and `asyncio.timeout` use), where
they were armed, garbage collections, Python calls by package (a coroutine's resumption counts
as a call), C calls, and how many distinct Python functions the measured requests ran (the
code a request touches: at c=1 the caches are cold for each request, so the more distinct
code and data, the more each request costs beyond its instructions; bench/README.md). The
client and the test upstream share the process (an aiohttp client and server, the same for
every system), so the floor's figures are the baseline to read pixgate's against.
`--bytecodes` adds the bytecodes executed by package (and by function with `--package`).

It runs on the standard asyncio loop, a subclass that counts timers (uvloop's are C code that
cannot be watched), with the profiler hook on; so it measures no time, and its counts do not
move with the machine's load. Each engine tree runs in a child process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # bench's checkout (not imported: engine may be)
BENCH = str(ROOT / "bench") + os.sep
SYSTEMS = ("pixgate", "floor")
TIMER_ORIGIN_DEPTH = 8  # frames searched for the code that armed a timer


class CountingLoop(asyncio.SelectorEventLoop):
    """The standard loop, counting the timers armed while `counting` is set, by origin."""

    def __init__(self) -> None:
        super().__init__()
        self.counting = False
        self.timers: collections.Counter[str] = collections.Counter()

    def call_at(
        self, when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        if self.counting:
            self.timers[_origin(sys._getframe(1))] += 1
        return super().call_at(when, callback, *args, context=context)


def _origin(frame: FrameType | None) -> str:
    """The nearest caller outside asyncio's own modules: `file:function`."""
    for _ in range(TIMER_ORIGIN_DEPTH):
        if frame is None:
            break
        name = frame.f_code.co_filename
        if "/asyncio/" not in name:
            return f"{_package(name)}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "asyncio"


def _package(filename: str) -> str:
    """engine/<subpackage or module>, a third-party package's name, or the stdlib module."""
    if "/engine/" in filename:
        return "engine/" + filename.rsplit("/engine/", 1)[1].split("/")[0].removesuffix(".py")
    if "site-packages/" in filename:
        return filename.rsplit("site-packages/", 1)[1].split("/")[0].removesuffix(".py")
    if filename.startswith(BENCH):
        return "bench (client, upstream)"
    return filename.rsplit("/", 1)[-1].removesuffix(".py") or filename


class Census:
    """sys.setprofile's hook: calls by package, C calls, distinct code objects."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.functions: collections.Counter[str] = collections.Counter()  # of `detail`
        self.detail = ""
        self.c_calls = 0
        self.codes: set[CodeType] = set()
        self._packages: dict[str, str] = {}

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            code = frame.f_code
            self.codes.add(code)
            package = self._packages.get(code.co_filename)
            if package is None:
                package = self._packages[code.co_filename] = _package(code.co_filename)
            self.calls[package] += 1
            if package == self.detail:
                self.functions[f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_qualname}"] += 1
        elif event == "c_call":
            self.c_calls += 1


class Bytecodes:
    """sys.settrace's hook: bytecodes executed, by package, and by function in the package
    `detail`. On a small request the instructions (bench.instr) follow the bytecodes, at
    about 75 a bytecode in pixgate and in the floor alike: the C work (parsing, dicts,
    allocation, the loop) is done for them."""

    def __init__(self, detail: str = "") -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.functions: collections.Counter[str] = collections.Counter()  # of `detail`
        self.detail = detail
        self._tracers: dict[str | CodeType, Callable[[FrameType, str, object], object]] = {}

    def __call__(self, frame: FrameType, event: str, arg: object) -> object:
        if event != "call":
            return None
        frame.f_trace_opcodes = True
        code = frame.f_code
        tracer = self._tracers.get(code)
        if tracer is None:
            package = _package(code.co_filename)
            name = f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_qualname}"
            tracer = self._tracers[code] = self._tracer(
                package, name if package == self.detail else None
            )
        return tracer

    def _tracer(
        self, package: str, function: str | None
    ) -> Callable[[FrameType, str, object], object]:
        counts, functions = self.counts, self.functions

        def count(frame: FrameType, event: str, arg: object) -> object:
            if event == "opcode":
                counts[package] += 1
                if function is not None:
                    functions[function] += 1
            return count

        return count


async def _drive(
    tree: Path, system: str, requests: int, concurrency: int, detail: str, bytecodes: bool
) -> dict[str, Any]:
    """The measured process (engine from `tree`, first on sys.path): warm-up, then counts."""
    import aiohttp

    from engine import logsetup
    from engine.app import create_app
    from engine.gctune import tune
    from engine.settings import Settings

    from . import nullproxy
    from .inproc import BODY, _serve, gateway_env, post_all
    from .procs import free_port
    from .run import assemble_config
    from .upstream import Upstream

    logsetup.configure("INFO")  # as `pixgate serve` logs, to /dev/null
    devnull = open(os.devnull, "w")  # noqa: ASYNC230, SIM115 (before serving; for the process)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    loop = asyncio.get_running_loop()
    assert isinstance(loop, CountingLoop)
    ports = [free_port() for _ in range(2)]
    upstream = f"http://127.0.0.1:{ports[0]}"
    with tempfile.TemporaryDirectory() as tmp:
        if system == "floor":
            app = nullproxy.make_app(upstream)
        else:
            config = assemble_config(tree, Path(tmp) / "config")
            env = gateway_env(upstream, Path(tmp))
            app = create_app(Settings.from_env(env, config_dir=config, watch=False))
        runners = [await _serve(Upstream(upstream).app(), ports[0]), await _serve(app, ports[1])]
        tune()  # as `pixgate serve` does once it has started
        url = f"http://127.0.0.1:{ports[1]}/v1/images/generations"
        collections_run: collections.Counter[int] = collections.Counter()

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                collections_run[info["generation"]] += 1

        census = Census()
        census.detail = detail
        opcodes = Bytecodes(detail)
        try:
            async with aiohttp.ClientSession() as http:
                await post_all(http, url, BODY, 5 * concurrency, concurrency)  # warm-up
                loop.counting = True
                gc.callbacks.append(on_gc)
                sys.setprofile(census)
                if bytecodes:
                    sys.settrace(opcodes)
                try:
                    await post_all(http, url, BODY, requests, concurrency)
                finally:
                    sys.settrace(None)
                    sys.setprofile(None)
                    gc.callbacks.remove(on_gc)
                    loop.counting = False
        finally:
            for runner in runners:
                await runner.cleanup()
    measured = requests // concurrency * concurrency
    return {
        "requests": measured,
        "timers": dict(loop.timers),
        "collections": {str(g): n for g, n in sorted(collections_run.items())},
        "calls": dict(census.calls),
        "c_calls": census.c_calls,
        "functions": len(census.codes),
        "detail": dict(census.functions),
        "bytecodes": dict(opcodes.counts),
        "bytecodes_detail": dict(opcodes.functions),
    }


def measure(
    tree: Path,
    system: str,
    requests: int,
    concurrency: int,
    detail: str = "",
    bytecodes: bool = False,
) -> dict[str, Any]:
    """The census of `system` with `tree`'s engine, in a child process."""
    cmd = [sys.executable, "-m", "bench.census", "--child", system, "--pixgate-root", str(tree)]
    cmd += ["--requests", str(requests), "-c", str(concurrency), "--package", detail]
    cmd += ["--bytecodes"] if bytecodes else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{system} with {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def report(label: str, result: dict[str, Any], top: int) -> list[str]:
    n = result["requests"]
    calls: dict[str, int] = result["calls"]
    timers: dict[str, int] = result["timers"]
    lines = [
        f"  {label}: {sum(calls.values()) / n:,.1f} Python calls and {result['c_calls'] / n:,.1f}"
        f" C calls per request, {result['functions']} distinct Python functions, "
        f"{sum(timers.values()) / n:.2f} timers armed per request, collections by "
        f"generation {result['collections'] or 'none'} in {n} requests"
    ]
    for package, count in sorted(calls.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {count / n:8.1f}  calls  {package}")
    for function, count in sorted(result["detail"].items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {count / n:8.1f}  calls  {function}")
    codes: dict[str, int] = result.get("bytecodes", {})
    if codes:
        lines.append(f"    {sum(codes.values()) / n:8.1f}  bytecodes executed per request")
    for package, count in sorted(codes.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {count / n:8.1f}  bytecodes  {package}")
    detail: dict[str, int] = result.get("bytecodes_detail", {})
    for function, count in sorted(detail.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {count / n:8.1f}  bytecodes  {function}")
    for origin, count in sorted(timers.items(), key=lambda kv: -kv[1]):
        if count / n >= 0.01:
            lines.append(f"    {count / n:8.2f}  timers {origin}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="measured requests")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--pixgate-root", type=Path, default=ROOT, help="engine tree (A)")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="a second engine tree (B)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor's census")
    parser.add_argument("--top", type=int, default=12, help="packages listed per system")
    parser.add_argument(
        "--package", default="", help="also list the functions of this package (e.g. aiohttp)"
    )
    parser.add_argument(
        "--bytecodes",
        action="store_true",
        help="also count the bytecodes executed, by package (sys.settrace: slower)",
    )
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        tree = args.pixgate_root.resolve()
        sys.path.insert(0, str(tree))  # engine from that tree
        with asyncio.Runner(loop_factory=CountingLoop) as runner:
            result = runner.run(
                _drive(
                    tree, args.child, args.requests, args.concurrency, args.package, args.bytecodes
                )
            )
        print(json.dumps(result))
        return 0
    print(f"small: {args.requests} requests at concurrency {args.concurrency}, asyncio loop")
    trees = [args.pixgate_root] + ([args.compare] if args.compare else [])
    firsts: list[dict[str, Any]] = []
    for tree in trees:
        result = measure(
            tree.resolve(), "pixgate", args.requests, args.concurrency, args.package, args.bytecodes
        )
        firsts.append(result)
        print("\n".join(report(f"pixgate {tree}", result, args.top)), flush=True)
    if not args.no_floor:
        floor = measure(
            trees[0].resolve(),
            "floor",
            args.requests,
            args.concurrency,
            args.package,
            args.bytecodes,
        )
        print("\n".join(report("floor (bench/nullproxy.py)", floor, args.top)))
    if args.compare:
        a, b = firsts
        per = [sum(r["calls"].values()) / r["requests"] for r in (a, b)]
        print(
            f"  B - A: {per[1] - per[0]:+,.1f} Python calls per request, "
            f"{b['functions'] - a['functions']:+d} distinct functions"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
