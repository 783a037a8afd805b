"""`pixgate serve --workers N`: processes share the port; each reaches its own demo upstream."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.gateway import (
    REPO,
    TEST_ADMIN_KEY,
    free_port,
    get_json,
    serve_process,
    wait_healthy,
)


def test_two_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    admin = {"PIXGATE_ADMIN_KEY": TEST_ADMIN_KEY}
    proc = serve_process(REPO, port, tmp_path / "files", "--workers", "2", env=admin)
    try:
        wait_healthy(port)
        time.sleep(0.3)  # both workers listening
        health = f"http://127.0.0.1:{port}/admin/health"
        pids = {get_json(health, token=TEST_ADMIN_KEY)["pid"] for _ in range(60)}
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
            assert get_json(f"http://127.0.0.1:{port}/v1/images/generations", body)["data"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    for pid in pids:  # no worker outlives the supervisor
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} still running")
