"""Start the real gateway on a loopback socket for tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.app import create_app
from engine.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Gateway:
    url: str
    app: web.Application

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def run_gateway(
    config_dir: Path,
    storage_dir: Path,
    env: Mapping[str, str] | None = None,
    **overrides: object,
) -> AsyncIterator[Gateway]:
    """The gateway exactly as `pixgate serve` builds it, on 127.0.0.1 and a free port.

    File watching is off unless a test asks for it (`watch=True`): most tests do not edit
    their config, and the reload tests turn it on."""
    overrides.setdefault("watch", False)
    port = free_port()
    settings = Settings.from_env(
        {"PIXGATE_POLL_INTERVAL_SCALE": "0.01", **(env or {})},
        config_dir=config_dir,
        storage_dir=storage_dir,
        port=port,
        **overrides,
    )
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Gateway(f"http://127.0.0.1:{port}", app)
    finally:
        await runner.cleanup()


def serve_process(
    config_dir: Path,
    port: int,
    storage_dir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m engine serve` as a real process (signals, workers, the event loop)."""
    cmd = [sys.executable, "-m", "engine", "serve", "--config", str(config_dir)]
    return subprocess.Popen(
        [*cmd, "--port", str(port), "--no-watch", *args],
        env={**os.environ, "PIXGATE_STORAGE_DIR": str(storage_dir), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def get_json(
    url: str, body: dict[str, Any] | None = None, timeout: float = 10, token: str | None = None
) -> Any:
    """GET, or POST `body` as JSON, with the standard library (no event loop needed)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


TEST_ADMIN_KEY = "test-admin-key-for-health-details"


def wait_healthy(port: int, deadline: float = 15, admin: str | None = None) -> dict[str, Any]:
    """/health of a gateway on `port` once it answers; with `admin` (its PIXGATE_ADMIN_KEY),
    /admin/health: the details (pid, config version) /health keeps to itself."""
    end = time.monotonic() + deadline
    url = f"http://127.0.0.1:{port}" + ("/admin/health" if admin else "/health")
    while True:
        try:
            return dict(get_json(url, timeout=2, token=admin))
        except OSError:
            assert time.monotonic() < end, "gateway did not become healthy"
            time.sleep(0.05)
