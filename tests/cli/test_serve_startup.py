"""What `pixgate serve` prints as it starts on the keyless shipped config."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from engine.config.loader import NO_KEY_CODES
from tests.gateway import REPO, free_port, serve_process, wait_healthy


@pytest.mark.parametrize("workers", [1, 2])
def test_keyless_providers_are_one_line_once(tmp_path: Path, workers: int) -> None:
    """One line names the providers without keys, instead of a W401/W402 per provider and
    route target, printed again by every process that built the config."""
    keyless = {k: "" for k in os.environ if k.endswith("_API_KEYS")}
    port = free_port()
    proc = serve_process(REPO, port, tmp_path / "files", "--workers", str(workers), env=keyless)
    try:
        wait_healthy(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    lines = err.decode().splitlines()
    assert not [line for line in lines if any(f" {c} " in line for c in NO_KEY_CODES)], lines
    summary = [line for line in lines if "have no keys" in line]
    assert len(summary) == 1, lines
    assert "providers have no keys and are skipped: " in summary[0]
    assert "openai, " in summary[0] and "`pixgate lint` for details" in summary[0]
