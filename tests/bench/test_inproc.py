"""bench.inproc: CPU per request of pixgate, the floor and direct (client and upstream alone)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_run_prints_each_system_and_the_own_figures() -> None:
    # a process of its own: bench.inproc configures logging for the whole process
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.inproc", "--rounds", "1", "--requests", "20", "-c", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pixgate" in done.stdout and "floor" in done.stdout
    assert "direct (client and upstream alone)" in done.stdout
    assert "without them pixgate" in done.stdout
