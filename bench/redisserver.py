"""A `redis-server` on loopback for the bench's `redis` scenario (Debian's package
redis-server; `.ci/run` installs it for the tests): a free port, nothing persisted. The caller
starts it with `Bench.start` (so it is stopped by PID in a `finally`) and waits with
`wait_ready`.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import time
from pathlib import Path

from .procs import Proc

READY_TIMEOUT = 10.0
INSTALL = "apt-get install redis-server"


def binary() -> str | None:
    return shutil.which("redis-server")


def command(redis_server: str, port: int, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        redis_server, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
        "--save", "", "--appendonly", "no", "--dir", str(folder),
    ]  # fmt: skip


def gateway_env(port: int) -> dict[str, str]:
    """What pixgate needs for Redis state: the URL, a made-up secret, the bench's own prefix."""
    return {
        "PIXGATE_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "PIXGATE_STATE_SECRET": secrets.token_hex(24),
        "PIXGATE_REDIS_PREFIX": "pixgate-bench",
    }


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def key_count(port: int) -> int:
    """DBSIZE: whether the gateway really kept its state in this Redis (0 if no answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"DBSIZE\r\n")
            answer = sock.recv(32)
    except OSError:
        return 0
    return int(answer[1:].split(b"\r\n")[0]) if answer.startswith(b":") else 0


def wait_ready(proc: Proc, port: int) -> float:
    """Seconds from start until redis-server answers PING; raises if it exits or never does."""
    deadline = proc.started + READY_TIMEOUT
    while not answers(port):
        if not proc.alive():
            raise RuntimeError(
                f"redis-server exited with {proc.popen.returncode}; see {proc.log_path}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer within {READY_TIMEOUT:g} s")
        time.sleep(0.02)
    return time.monotonic() - proc.started
