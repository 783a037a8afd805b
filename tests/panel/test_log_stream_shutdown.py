"""An open live-log stream ends when the gateway stops: SIGTERM's drain is not held up by it."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from pathlib import Path

from tests.gateway import REPO, free_port, serve_process, wait_healthy

ADMIN = "admin-key-log-stream-0123456789"


def test_sigterm_ends_open_log_streams(tmp_path: Path) -> None:
    port = free_port()
    proc = serve_process(REPO, port, tmp_path / "files", env={"PIXGATE_ADMIN_KEY": ADMIN})
    try:
        wait_healthy(port, deadline=30)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/admin/api/logs?replay=5",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        stream = urllib.request.urlopen(request, timeout=30)
        first = stream.readline()
        assert first.startswith(b"data:") or first.startswith(b":")
        ended = threading.Event()
        threading.Thread(target=lambda: (stream.read(), ended.set()), daemon=True).start()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        # The grace period is 30 s: ending well before it means the stream did not hold it.
        assert time.monotonic() - started < 10
        assert ended.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
