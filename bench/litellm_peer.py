"""The peer: LiteLLM's proxy in its own virtualenv (bench/.venv-litellm), one worker.

The venv is created and `litellm[proxy]` installed into it on first use (unless the caller says
not to). The proxy gets one `openai/<scenario>` model per bench scenario, each with `api_base`
pointing at the bench upstream, a master key (LiteLLM refuses to start without one), and
`LITELLM_LOCAL_MODEL_COST_MAP=True` so it does not try to fetch its price list from the
internet at start-up.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import procstat
from .procs import Proc, free_port, pinned
from .scenarios import OPENAI_KEY, POLL, Scenario

if TYPE_CHECKING:
    from .run import Bench

VENV = Path(__file__).resolve().parent / ".venv-litellm"
PACKAGE = "litellm[proxy]"
HEALTH_PATH = "/health/liveliness"


@dataclass(slots=True)
class Peer:
    executable: Path
    version: str


def _bin(name: str) -> Path:
    return VENV / "bin" / name


def installed() -> Peer | None:
    exe = _bin("litellm")
    python = _bin("python")
    if not exe.exists() or not python.exists():
        return None
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if out.returncode != 0:
        return None
    return Peer(exe, out.stdout.strip())


def install(log: Path) -> Peer | None:
    """Create the venv and `pip install 'litellm[proxy]'` (a minute or two, once)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [str(_bin("python")), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(_bin("python")), "-m", "pip", "install", "-q", PACKAGE],
    ]
    if not _bin("python").exists():
        steps.insert(0, [sys.executable, "-m", "venv", str(VENV)])
    with open(log, "ab") as fh:
        for cmd in steps:
            done = subprocess.run(
                cmd, stdout=fh, stderr=subprocess.STDOUT, check=False, timeout=1200
            )
            if done.returncode != 0:
                return None
    return installed()


def write_config(path: Path, upstream: str, models: list[str], api_key: str) -> None:
    """LiteLLM YAML (written as JSON, which YAML reads) with one model per scenario."""
    config = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_base": f"{upstream}/v1",
                    "api_key": api_key,
                },
            }
            for name in models
        ],
        "litellm_settings": {"drop_params": True},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))


def master_key() -> str:
    return f"sk-bench-{secrets.token_hex(16)}"


def command(peer: Peer, config: Path, port: int) -> list[str]:
    return [
        str(peer.executable),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]


def environment(key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LITELLM_MASTER_KEY": key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
        }
    )
    env.pop("PYTHONPATH", None)
    return env


def run(bench: Bench, scenarios: tuple[Scenario, ...]) -> None:
    """The LiteLLM phase of a bench run: install if allowed, then one process through every
    scenario's LiteLLM cells (bench/repeats.py starts more for the small cells)."""
    info = bench.systems.setdefault("litellm", {})
    if bench.args.skip_litellm:
        info["status"] = "skipped (--skip-litellm)"
        return
    peer = installed()
    if peer is None and not bench.args.no_install:
        _log("installing litellm[proxy] into bench/.venv-litellm (once; takes a while)")
        peer = install(bench.run_dir / "litellm-install.log")
    if peer is None:
        info["status"] = "not installed (pip install 'litellm[proxy]' failed or not allowed)"
        bench.notes.append(f"LiteLLM: {info['status']}; see README")
        return
    info["version"] = peer.version
    names = [s.name for s in scenarios if s is not POLL]
    write_config(_config(bench), bench.upstream_url, names, OPENAI_KEY)
    started = start(bench, peer)
    if started is None:
        return
    proc, url, headers = started
    try:
        for scenario in scenarios:
            for c in scenario.concurrencies("litellm", bench.quick):
                bench.cell("litellm", scenario, url, headers, c, proc)
        info["final_rss_mib"] = procstat.tree_kib(procstat.tree(proc.pid), "VmRSS") / 1024.0
    finally:
        bench.stop(proc)


def start(bench: Bench, peer: Peer, label: str = "") -> tuple[Proc, str, dict[str, str]] | None:
    """LiteLLM's proxy on the gateway's core, healthy and idle for 1 s: (process, URL, headers).
    The first start fills in its system row."""
    info = bench.systems["litellm"]
    key = master_key()
    port = free_port()
    cmd = pinned(command(peer, _config(bench), port), bench.gw_cpus)
    info["command"] = " ".join(cmd)
    base = f"http://127.0.0.1:{port}"
    proc = bench.start(
        f"litellm-{label}" if label else "litellm", cmd, environment(key), bench.run_dir
    )
    try:
        startup = proc.wait_http(base + HEALTH_PATH, timeout=120, every=0.05)
    except RuntimeError as exc:
        info["status"] = f"failed to start: {exc}"
        bench.notes.append(f"LiteLLM did not start: {exc}: {proc.tail(3)!r}")
        bench.stop(proc)
        return None
    time.sleep(1.0)
    if info.get("status") != "ok":
        pids = procstat.tree(proc.pid)
        info.update(
            {
                "status": "ok",
                "startup_s": [startup],
                "startup_median_s": startup,
                "idle_rss_mib": procstat.tree_kib(pids, "VmRSS") / 1024.0,
                "affinity": procstat.affinity(proc.pid),
                "processes": len(pids),
            }
        )
    _log(f"litellm {peer.version} pid {proc.pid}: healthy after {startup:.1f} s")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return proc, base + "/v1/images/generations", headers


def _config(bench: Bench) -> Path:
    return bench.run_dir / "litellm-config.yaml"


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
