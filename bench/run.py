"""Run the benchmark: `python -m bench.run [--quick] [--skip-litellm]` (see bench/README.md).

Starts the test upstream, measures every scenario against it directly, then through pixgate,
then through LiteLLM's proxy, and writes `bench/out/results.{json,md}`. Every process it starts
is stopped by PID in a `finally`, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from . import heavy, litellm_peer, procstat, profile, repeats, report
from .load import LoadResult, run_python, run_wrk, write_wrk_script, wrk_available, wrk_version
from .procs import Proc, free_port, pin_self, pinned
from .scenarios import CLIENT_KEY, HEAVY, OPENAI_KEY, POLL, POLL_JOBS, SMALL, Scenario, by_name

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
GATEWAY_CPUS, LOAD_CPUS = "0", "1"
WORKERS_SYSTEM = "pixgate-2w"  # `pixgate serve --workers 2`
MIB = 1024.0
BENCH_MODELS = ("small", "b64", "slow", "long", "store", "redis", "download")  # openai models
KEYS_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*_API_KEYS?)\b")
DUMMY_KEY = "bench-dummy-key-0123456789abcdef0123456789"


def assemble_config(root: Path, config: Path) -> Path:
    """bench/config (routes and the polling providers) plus every provider file `root` ships,
    so each start loads them all (the start-up target counts them). The shipped openai file
    gets one model per bench scenario, so the bench always measures the real provider
    definition rather than a copy that drifts."""
    if not config.exists():
        shutil.copytree(BENCH / "config", config)
        for shipped_file in sorted((root / "providers.d").glob("*.yaml")):
            shutil.copy(shipped_file, config / "providers.d" / shipped_file.name)
        shipped = yaml.safe_load((root / "providers.d" / "openai.yaml").read_text())
        for scenario in BENCH_MODELS:
            shipped["models"][scenario] = {"sizes": ["1024x1024"], "max_n": 10}
        (config / "providers.d" / "openai.yaml").write_text(yaml.safe_dump(shipped))
    return config


def dummy_keys(config: Path) -> dict[str, str]:
    """A made-up key for every `${NAME_API_KEYS...}` the config's provider files read, so each
    provider loads with a key as in a real deployment; no route sends anything to them."""
    names: set[str] = set()
    for path in (config / "providers.d").glob("*.yaml"):
        names.update(KEYS_VARIABLE.findall(path.read_text()))
    return {name: DUMMY_KEY for name in sorted(names)}


def raise_fd_limit() -> int:
    """Raise this process's soft file-descriptor limit to its hard limit, so the bench and the
    gateways it starts (they inherit it) can hold thousands of sockets; the user's shell keeps
    its own limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def _git(*args: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip()
    return ""


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def ensure_wrk(allow_install: bool, log: Path) -> bool:
    """wrk from Debian (`apt-get install wrk`) when missing, if we may and can."""
    if wrk_available():
        return True
    if not allow_install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    _log("wrk is missing: apt-get install wrk")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        for cmd in (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"]):
            subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=600, check=False)
            if wrk_available():
                return True
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    return wrk_available()


def sample_error(url: str, body: bytes, headers: Mapping[str, str]) -> str:
    """What one request answers now, for a cell that had errors (status and message)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        text = exc.read()[:2000].decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            text = json.loads(text)["error"]["message"]
        return f"HTTP {exc.code}: {text[:160]}"
    except OSError as exc:
        return f"no answer: {exc}"


def first_failure(log: Path) -> str | None:
    """The reason of the first failed upstream attempt in a pixgate log, if any."""
    with contextlib.suppress(OSError), open(log, errors="replace") as fh:
        for line in fh:
            if "attempt failed" in line:
                return line.split("kind=", 1)[-1].strip()[:160]
    return None


class Bench:
    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.run_dir = run_dir
        self.cell_s: float = args.cell_seconds or (3.0 if self.quick else 12.0)
        self.warmup_s: float = args.warmup_seconds or (1.0 if self.quick else 2.0)
        self.processes: int = max(1, args.processes)  # of each system, for the small cells
        self.pin = not args.no_pin and (os.cpu_count() or 1) >= 2
        self.gw_cpus = GATEWAY_CPUS if self.pin else None
        self.load_cpus = LOAD_CPUS if self.pin else None
        self.use_wrk = False
        self.procs: list[Proc] = []
        self.cells: list[dict[str, Any]] = []
        self.systems: dict[str, dict[str, Any]] = {"direct": {"status": "ok"}}
        self.notes: list[str] = []
        self.upstream: Proc | None = None
        self.upstream_url = ""

    # --- processes ------------------------------------------------------------------------

    def start(
        self, name: str, cmd: list[str], env: Mapping[str, str] | None = None, cwd: Path = ROOT
    ) -> Proc:
        proc = Proc(name, cmd, self.run_dir / f"{name}.log", env=env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)

    def start_upstream(self) -> None:
        port = free_port()
        cmd = pinned([sys.executable, "-m", "bench.upstream", "--port", str(port)], self.load_cpus)
        self.upstream = self.start("upstream", cmd)
        self.upstream_url = f"http://127.0.0.1:{port}"
        self.upstream.wait_http(self.upstream_url + "/health", timeout=30)
        _log(f"upstream on {self.upstream_url} (pid {self.upstream.pid})")

    # --- load -----------------------------------------------------------------------------

    def load(
        self,
        name: str,
        url: str,
        scenario: Scenario,
        headers: dict[str, str],
        c: int,
        seconds: float,
        *,
        chain: bool = False,
        batch: int = 0,
        rounds: int = 1,
        ramp_s: float = 0.0,
        timeout_s: float = 60.0,
    ) -> LoadResult:
        body = scenario.body()
        if self.use_wrk and not chain and not batch:
            script = write_wrk_script(self.run_dir / "lua", name, body, headers)
            return run_wrk(url, script, c, seconds, self.load_cpus)
        body_file = self.run_dir / "lua" / f"{name}.body.json"
        body_file.parent.mkdir(parents=True, exist_ok=True)
        body_file.write_bytes(body)
        return run_python(
            url,
            body_file,
            headers,
            c,
            seconds,
            self.load_cpus,
            chain=chain,
            batch=batch,
            rounds=rounds,
            ramp_s=ramp_s,
            timeout_s=timeout_s,
        )

    def cell(
        self,
        target: str,
        scenario: Scenario,
        url: str,
        headers: dict[str, str],
        c: int,
        gateway: Proc | None,
        seconds: float | None = None,
    ) -> None:
        name = f"{target}-{scenario.name}"
        chain = scenario.direct_chain and target == "direct"
        slow = scenario.name == "slow"
        seconds = seconds or self.cell_s
        _log(f"{target:8s} {scenario.name:9s} c={c:<4d} warm-up {self.warmup_s:g}s, {seconds:g}s")
        try:
            self.load(name, url, scenario, headers, c, self.warmup_s, chain=chain)
            time.sleep(1.2 if slow else 0.2)  # let warm-up requests still in flight finish
            assert self.upstream is not None
            watched = gateway.pid if gateway is not None else self.upstream.pid
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            with (
                self.profiling(gateway, f"{name}-c{c}", seconds),
                procstat.Watch(watched) as gw,
                procstat.Watch(self.upstream.pid) as up,
            ):
                result = self.load(name, url, scenario, headers, c, seconds, chain=chain)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        except Exception as exc:  # a broken cell is reported, the rest still runs
            self.notes.append(f"{target} {scenario.name} c={c} failed: {exc}")
            _log(f"  failed: {exc}")
            return
        load_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        cell = self._record(target, scenario, c, result, gw, up, load_cpu, gateway)
        if result.errors:
            first = first_failure(gateway.log_path) if gateway is not None else None
            now = sample_error(url, scenario.body(), headers)
            cell["sample_error"] = f"first: {first}; now: {now}" if first else now
            _log(f"  errors: {cell['sample_error']}")
        self.cells.append(cell)

    @contextlib.contextmanager
    def profiling(self, gateway: Proc | None, name: str, seconds: float) -> Iterator[None]:
        """With --profile, py-spy samples the gateway (from the load core) during the cell."""
        if not self.args.profile or gateway is None or not profile.available():
            yield
            return
        folder = self.run_dir / "profiles"
        folder.mkdir(parents=True, exist_ok=True)
        raw = folder / f"{name}.txt"
        spy = self.start(
            f"py-spy-{name}", pinned(profile.command(gateway.pid, seconds, raw), self.load_cpus)
        )
        try:
            yield
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.popen.wait(seconds + 30)
            self.stop(spy)
        if raw.exists():
            (folder / f"{name}.summary.txt").write_text(profile.summarize(raw))

    def _record(
        self,
        target: str,
        scenario: Scenario,
        c: int,
        result: LoadResult,
        gw: procstat.Watch,
        up: procstat.Watch,
        load_cpu: float,
        gateway: Proc | None,
    ) -> dict[str, Any]:
        wall = max(gw.usage.wall_s, 1e-9)
        cell: dict[str, Any] = {
            "scenario": scenario.name,
            "target": target,
            "c": c,
            "tool": result.tool,
            "requests": result.requests,
            "errors": result.errors,
            "duration_s": result.duration_s,
            "rps": result.rps,
            "mean_ms": result.mean_ms,
            "p50_ms": result.p50_ms,
            "p90_ms": result.p90_ms,
            "p99_ms": result.p99_ms,
            "max_ms": result.max_ms,
            "little_rps": c / (result.mean_ms / 1000) if result.mean_ms else 0.0,
            "upstream_cpu_pct": up.usage.cpu_s / wall * 100,
            "load_cpu_pct": load_cpu / wall * 100,
            "core1_pct": (up.usage.cpu_s + load_cpu) / wall * 100,
            "load_detail": result.detail,
        }
        if gateway is not None:
            cell.update(
                {
                    "cpu_s": gw.usage.cpu_s,
                    "cpu_pct": gw.usage.cpu_s / max(result.duration_s, 1e-9) * 100
                    if scenario is POLL
                    else gw.usage.cpu_s / wall * 100,
                    "cpu_ms_per_req": gw.usage.cpu_s * 1000 / result.requests
                    if result.requests
                    else None,
                    "waited_pct": gw.usage.waited_s / wall * 100,
                    "peak_rss_mib": gw.usage.peak_rss_kib / MIB,
                    "end_rss_mib": gw.usage.end_rss_kib / MIB,
                    "hwm_reset": gw.hwm_reset,
                }
            )
        _log(
            f"  {result.rps:9.1f} req/s  p50 {result.p50_ms:8.2f} ms  p99 {result.p99_ms:8.2f} ms"
            f"  errors {result.errors}"
            + (
                f"  cpu {cell['cpu_ms_per_req'] or 0:.3f} ms/req"
                f"  rss {cell['peak_rss_mib']:.0f} MiB"
                if gateway is not None
                else ""
            )
        )
        return cell

    # --- systems --------------------------------------------------------------------------

    def run_direct(self, scenarios: tuple[Scenario, ...]) -> None:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {OPENAI_KEY}"}
        url = self.upstream_url + "/v1/images/generations"
        for scenario in scenarios:
            if scenario is POLL:
                continue
            for c in scenario.concurrencies("direct", self.quick):
                self.cell("direct", scenario, url, headers, c, None)

    def start_floor(self, label: str = "floor") -> Proc | None:
        """bench/nullproxy.py on the gateway's core and loop; the first start fills in the
        floor's system row."""
        info = self.systems.setdefault("floor", {})
        port = free_port()
        cmd = [sys.executable, "-m", "bench.nullproxy", "--upstream", self.upstream_url]
        cmd += ["--port", str(port)]
        if self.args.gateway_loop != "asyncio" and _version("uvloop"):
            cmd.append("--uvloop")  # the same loop pixgate picks
        proc = self.start(label, pinned(cmd, self.gw_cpus))
        info["url"] = f"http://127.0.0.1:{port}"
        try:
            startup = proc.wait_http(info["url"] + "/health", timeout=30)
        except RuntimeError as exc:
            info["status"] = f"failed to start: {exc}"
            self.stop(proc)
            return None
        if info.get("status") != "ok":
            time.sleep(0.5)
            info.update(
                {
                    "status": "ok",
                    "version": f"aiohttp {_version('aiohttp')} pass-through",
                    "startup_s": [startup],
                    "startup_median_s": startup,
                    "idle_rss_mib": procstat.tree_kib(procstat.tree(proc.pid), "VmRSS") / MIB,
                    "affinity": procstat.affinity(proc.pid),
                }
            )
        return proc

    def run_floor(self, scenarios: tuple[Scenario, ...]) -> None:
        """bench/nullproxy.py: what any aiohttp gateway costs at the least (same loop, core),
        polling scenario included."""
        info = self.systems.setdefault("floor", {})
        if self.args.skip_floor:
            info["status"] = "skipped (--skip-floor)"
            return
        proc = self.start_floor()
        if proc is None:
            return
        try:
            headers = {"Content-Type": "application/json"}
            url = info["url"] + "/v1/images/generations"
            for scenario in scenarios:
                if scenario is POLL:  # the floor does the bench-poll flow itself
                    self.poll_cell("floor", url, headers, proc)
                for c in scenario.concurrencies("floor", self.quick):
                    self.cell("floor", scenario, url, headers, c, proc)
            info["final_rss_mib"] = procstat.tree_kib(procstat.tree(proc.pid), "VmRSS") / MIB
        finally:
            self.stop(proc)

    def gateway_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIXGATE_")}
        root = str(Path(self.args.pixgate_root).resolve())
        env.update(dummy_keys(self.gateway_config(Path(root))))
        env.update(
            {
                "OPENAI_API_KEYS": OPENAI_KEY,
                "OPENAI_BASE_URL": self.upstream_url + "/v1",
                "BENCH_POLL_BASE_URL": self.upstream_url + "/v1",
                "PIXGATE_API_KEYS": CLIENT_KEY,
                "PIXGATE_STORAGE_DIR": str(self.run_dir / "storage"),
                "PIXGATE_EVENT_LOOP": self.args.gateway_loop,
                "PYTHONPATH": os.pathsep.join(
                    p for p in (root, str(ROOT), env.get("PYTHONPATH", "")) if p
                ),
            }
        )
        env.update(extra or {})
        return env

    def gateway_config(self, root: Path) -> Path:
        return assemble_config(root, self.run_dir / "config")

    def start_pixgate(
        self,
        label: str,
        system: str = "pixgate",
        workers: int = 1,
        cpus: str | None = None,
        env: Mapping[str, str] | None = None,
        config: Path | None = None,
    ) -> Proc | None:
        """A fresh pixgate: one per scenario, so a scenario's failures (circuit breaker, key
        cooldowns) or memory cannot leak into the next. Every start is a start-up sample; the
        first one also gives the idle RSS (1 s after healthy, before any image request).
        `config` replaces the run's assembled config (a variant of it)."""
        cpus = cpus or self.gw_cpus
        info = self.systems.setdefault(system, {})
        info.setdefault("startup_s", [])
        info.setdefault("final_rss_mib", 0.0)
        port = free_port()
        root = Path(self.args.pixgate_root).resolve()
        cmd = [
            sys.executable,
            "-m",
            "engine",
            "serve",
            "--config",
            str(config or self.gateway_config(root)),
            "--port",
            str(port),
            "--log-level",
            self.args.gateway_log_level,
        ]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        info["command"] = " ".join(pinned(cmd, cpus))
        info["url"] = f"http://127.0.0.1:{port}"
        proc = self.start(f"{system}-{label}", pinned(cmd, cpus), self.gateway_env(env), root)
        try:
            info["startup_s"].append(proc.wait_http(info["url"] + "/health", timeout=30))
        except RuntimeError as exc:
            info["status"] = f"failed to start: {exc}"
            self.notes.append(f"{system} did not start: {exc}: {proc.tail(3)!r}")
            self.stop(proc)
            return None
        info["startup_median_s"] = statistics.median(info["startup_s"])
        if "idle_rss_mib" not in info:
            time.sleep(1.0)
            info.update(
                {
                    "status": "ok",
                    "version": self._pixgate_version(root),
                    "idle_rss_mib": procstat.tree_kib(procstat.tree(proc.pid), "VmRSS") / MIB,
                    "affinity": procstat.affinity(proc.pid),
                    "shipped_providers": len(list((root / "providers.d").glob("*.yaml"))),
                }
            )
            _log(
                f"{system} pid {proc.pid}: healthy after {info['startup_s'][-1]:.2f} s, "
                f"idle RSS {info['idle_rss_mib']:.1f} MiB"
            )
        return proc

    def _pixgate_version(self, root: Path) -> str:
        out = subprocess.run(
            [sys.executable, "-c", "import engine; print(engine.__version__)"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return out.stdout.strip() or "?"

    def run_pixgate(self, scenarios: tuple[Scenario, ...]) -> None:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}
        for scenario in scenarios:
            proc = self.start_pixgate(scenario.name)
            if proc is None:
                return
            url = self.systems["pixgate"]["url"] + "/v1/images/generations"
            try:
                if scenario is POLL:
                    self.poll_cell("pixgate", url, headers, proc)
                else:
                    for c in scenario.concurrencies("pixgate", self.quick):
                        self.cell("pixgate", scenario, url, headers, c, proc)
                info = self.systems["pixgate"]
                info["final_rss_mib"] = max(
                    info["final_rss_mib"],
                    procstat.tree_kib(procstat.tree(proc.pid), "VmRSS") / MIB,
                )
            finally:
                self.stop(proc)

    def run_pixgate_workers(self, scenarios: tuple[Scenario, ...]) -> None:
        """`pixgate serve --workers 2` on the small scenario, allowed on every core: on a
        2-core machine the second worker shares core 1 with the upstream and the load."""
        info = self.systems.setdefault(WORKERS_SYSTEM, {"startup_s": [], "final_rss_mib": 0.0})
        if self.args.skip_workers or SMALL not in scenarios:
            info["status"] = "skipped" + (" (--skip-workers)" if self.args.skip_workers else "")
            return
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}
        cpus = ",".join(str(c) for c in range(os.cpu_count() or 1)) if self.pin else None
        proc = self.start_pixgate(SMALL.name, WORKERS_SYSTEM, workers=2, cpus=cpus)
        if proc is None:
            return
        try:
            time.sleep(0.5)  # both workers listening
            url = info["url"] + "/v1/images/generations"
            for c in (64,) if self.quick else (16, 64):
                self.cell(WORKERS_SYSTEM, SMALL, url, headers, c, proc)
            info["final_rss_mib"] = procstat.tree_kib(procstat.tree(proc.pid), "VmRSS") / MIB
        finally:
            self.stop(proc)

    def poll_cell(self, system: str, url: str, headers: dict[str, str], gateway: Proc) -> None:
        """POLL_JOBS jobs started at once through `system` (pixgate or the floor), after a
        50-job warm-up batch; CPU is over the batch's wall time. Only pixgate is profiled."""
        _log(f"{system:8s} poll      {POLL_JOBS} jobs at once (after a 50-job warm-up)")
        assert self.upstream is not None
        name = f"{system}-poll"
        try:
            self.load(name, url, POLL, headers, 50, 0, batch=50)
            time.sleep(0.3)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            with (
                self.profiling(gateway if system == "pixgate" else None, name, 3.0),
                procstat.Watch(gateway.pid) as gw,
                procstat.Watch(self.upstream.pid) as up,
            ):
                result = self.load(name, url, POLL, headers, POLL_JOBS, 0, batch=POLL_JOBS)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        except Exception as exc:
            self.notes.append(f"{system} poll batch failed: {exc}")
            _log(f"  failed: {exc}")
            return
        load_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        cell = self._record(system, POLL, POLL_JOBS, result, gw, up, load_cpu, gateway)
        cell["window_cpu_pct"] = gw.usage.cpu_fraction * 100
        self.cells.append(cell)

    # --- results --------------------------------------------------------------------------

    def finish(self) -> None:
        self.cells = repeats.fold(self.cells)
        direct = {(c["scenario"], c["c"]): c for c in self.cells if c["target"] == "direct"}
        for cell in self.cells:
            base = direct.get((cell["scenario"], cell["c"]))
            if cell["target"] != "direct" and base is not None:
                cell["added_p50_ms"] = cell["p50_ms"] - base["p50_ms"]


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 s cells, fewer cells (~1.5 min)")
    parser.add_argument("--skip-litellm", action="store_true", help="do not run the LiteLLM peer")
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never install anything (wrk via apt-get, LiteLLM via pip into bench/.venv-litellm)",
    )
    parser.add_argument(
        "--scenarios",
        help="comma-separated subset: small,b64,slow,download,poll and the heavy long,poll-long,"
        "store,redis (a full run has all; --quick leaves out the heavy ones unless named)",
    )
    parser.add_argument("--out", default=str(BENCH / "out"), help="output directory")
    parser.add_argument(
        "--pixgate-root",
        default=str(ROOT),
        help="directory whose `engine` package is benchmarked (e.g. a patched copy)",
    )
    parser.add_argument(
        "--gateway-log-level", default="INFO", help="pixgate --log-level (INFO = as shipped)"
    )
    parser.add_argument(
        "--open-requests",
        type=int,
        default=0,
        help="requests held open in the `long` scenario (default 5000; judged only at 5000)",
    )
    parser.add_argument(
        "--polling-jobs",
        type=int,
        default=0,
        help="jobs in the `poll-long` scenario (default 10000; judged only at 10000)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=3,
        help="fresh processes of the floor, pixgate and LiteLLM for the small cells, which are "
        "judged on the median (default 3; 1 = one process each, as before)",
    )
    parser.add_argument("--cell-seconds", type=float, default=0.0)
    parser.add_argument("--warmup-seconds", type=float, default=0.0)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--python-load",
        action="store_true",
        help="use the aiohttp load generator even when wrk is there",
    )
    parser.add_argument(
        "--skip-floor", action="store_true", help="do not run the aiohttp pass-through floor"
    )
    parser.add_argument(
        "--skip-workers", action="store_true", help="do not run pixgate with --workers 2"
    )
    parser.add_argument(
        "--gateway-loop",
        choices=["auto", "asyncio"],
        default="auto",
        help="pixgate's PIXGATE_EVENT_LOOP, also used by the floor (auto: uvloop when installed)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record each gateway cell with py-spy into out/run-*/profiles/ (perturbs numbers)",
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    fd_limit = raise_fd_limit()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    run_dir = out / f"run-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    chosen = by_name(args.scenarios, args.quick)
    scenarios = tuple(s for s in chosen if s not in HEAVY)
    bench = Bench(args, run_dir)
    if bench.pin:
        pin_self(LOAD_CPUS)  # the orchestrator and its RSS samplers stay off the gateway's core
    bench.use_wrk = not args.python_load and ensure_wrk(
        not args.no_install, run_dir / "apt-wrk.log"
    )
    if args.profile:
        bench.notes.append("--profile: py-spy sampled the gateways, so their numbers are perturbed")
    if not bench.use_wrk:
        bench.notes.append("wrk not available: the aiohttp load generator was used for all cells")
    loadavg_start = _loadavg()
    _log(f"output in {run_dir}; load average {loadavg_start}")

    interrupted = False
    with _terminate_on_sigterm():
        try:
            bench.start_upstream()
            bench.run_direct(scenarios)
            bench.run_floor(scenarios)
            bench.run_pixgate(scenarios)
            bench.run_pixgate_workers(scenarios)
            litellm_peer.run(bench, scenarios)
            repeats.run(bench, scenarios)
            heavy.run(bench, tuple(s for s in chosen if s in HEAVY))
        except (KeyboardInterrupt, SystemExit) as exc:
            interrupted = True
            bench.notes.append(f"interrupted ({type(exc).__name__}): partial results")
            _log("interrupted: stopping everything, writing partial results")
        finally:
            bench.stop_all()
    bench.finish()

    results: dict[str, Any] = {
        "meta": {
            "quick": args.quick,
            "started": stamp,
            "elapsed_s": time.monotonic() - started,
            "host": f"{os.cpu_count()} cores, {platform.platform()}",
            "pixgate": f"{_git('rev-parse', '--short', 'HEAD') or '?'}"
            + (" (work tree has changes)" if _git("status", "--porcelain", "engine") else "")
            + f", engine from {Path(args.pixgate_root).resolve()}, "
            f"--log-level {args.gateway_log_level}" + f", PIXGATE_EVENT_LOOP={args.gateway_loop}",
            "python": platform.python_version(),
            "aiohttp": _version("aiohttp"),
            "uvloop": _version("uvloop"),
            "load_tool": (wrk_version() or "wrk") + " (download direct: aiohttp chain)"
            if bench.use_wrk
            else "aiohttp load generator (bench/load.py)",
            "pinning": (
                f"gateway (pixgate, LiteLLM) on core {GATEWAY_CPUS}; upstream, load generator "
                f"and orchestrator on core {LOAD_CPUS} (taskset -c)"
                if bench.pin
                else "none (--no-pin or fewer than 2 cores)"
            ),
            "cell_s": bench.cell_s,
            "warmup_s": bench.warmup_s,
            "processes": bench.processes,
            "loadavg_start": loadavg_start,
            "loadavg_end": _loadavg(),
            "fd_limit": fd_limit,
            "run_dir": str(run_dir),
        },
        "systems": bench.systems,
        "cells": bench.cells,
        "notes": bench.notes,
    }
    results["targets"] = report.targets_as_dicts(report.evaluate(results))
    text = report.markdown(results)
    payload = json.dumps(results, indent=2, default=str)
    for folder in (out, run_dir):
        (folder / "results.json").write_text(payload)
        (folder / "results.md").write_text(text)
    print(text)
    _log(f"wrote {out / 'results.md'} and {out / 'results.json'} (copies in {run_dir})")
    return 130 if interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
