"""`pixgate serve --workers N`: processes share the port; each reaches its own demo upstream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.gateway import REPO, free_port


def get(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def wait_healthy(port: int, deadline: float = 15) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            get(f"http://127.0.0.1:{port}/health")
            return
        except OSError:
            assert time.monotonic() < end, "gateway did not become healthy"
            time.sleep(0.05)


def test_two_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PIXGATE_STORAGE_DIR": str(tmp_path / "files")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "serve",
            "--config",
            str(REPO),
            "--port",
            str(port),
            "--workers",
            "2",
            "--no-watch",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_healthy(port)
        time.sleep(0.3)  # both workers listening
        pids = {get(f"http://127.0.0.1:{port}/health")["pid"] for _ in range(60)}
        assert len(pids) == 2 and proc.pid not in pids
        # demo-async submits and polls: each worker must poll itself, never its sibling
        for _ in range(6):
            body = {
                "model": "demo-async",
                "prompt": "x",
                "size": "64x64",
                "delay": 0.1,
                "response_format": "b64_json",
            }
            assert get(f"http://127.0.0.1:{port}/v1/images/generations", body)["data"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    for pid in pids:  # no worker outlives the supervisor
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} still running")
