"""Start, pin, health-check and stop the bench's child processes (always by PID)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from . import procstat


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: each socket stays bound until all are chosen."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """`taskset -c CPUS cmd...` (taskset execs, so the PID stays the program's own)."""
    if cpus is None:
        return list(cmd)
    if shutil.which("taskset"):
        return ["taskset", "-c", cpus, *cmd]
    return list(cmd)


def pin_self(cpus: str) -> None:
    """Pin this process (the orchestrator and its samplers) to `cpus`, e.g. "1"."""
    with contextlib.suppress(OSError, ValueError):
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


class Proc:
    """A child process with its output in a log file; `stop()` ends it and its children."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            self.cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # its own process group: stop() can reach its children
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_http(self, url: str, timeout: float, every: float = 0.01) -> float:
        """Seconds from process start until `url` answers 200; raises if it never does."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return time.monotonic() - self.started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(every)
        raise RuntimeError(f"{self.name} not healthy at {url} after {timeout:g}s")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process and its descendants (by PID), SIGKILL whatever is left."""
        if self.alive():
            pids = procstat.tree(self.pid)
            for pid in reversed(pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
            for pid in pids:
                # Only what is still ours: same session as the child we started.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getsid(pid) == self.pid:
                        os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        self._log.close()
