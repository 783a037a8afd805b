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
from dataclasses import dataclass
from pathlib import Path

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
