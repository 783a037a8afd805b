"""The event loop `pixgate serve` runs on: uvloop when installed, asyncio on request."""

from __future__ import annotations

import asyncio
import importlib
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.eventloop import loop_factory
from tests.gateway import REPO, free_port, get_json, serve_process, wait_healthy


def test_auto_prefers_uvloop_and_asyncio_is_the_standard_loop() -> None:
    uvloop = pytest.importorskip("uvloop")
    factory, name = loop_factory("auto")
    loop = factory()
    try:
        assert name == "uvloop" and isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    factory, name = loop_factory("asyncio")
    loop = factory()
    try:
        assert name == "asyncio" and not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.import_module

    def no_uvloop(name: str, *args: Any) -> Any:
        if name == "uvloop":
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_uvloop)
    assert loop_factory("auto") == (asyncio.new_event_loop, "asyncio")
    with pytest.raises(ValueError, match="not installed"):
        loop_factory("uvloop")
    with pytest.raises(ValueError, match="one of auto, uvloop, asyncio"):
        loop_factory("trio")


def _serve(port: int, tmp_path: Path, loop: str) -> subprocess.Popen[bytes]:
    return serve_process(REPO, port, tmp_path / "files", env={"PIXGATE_EVENT_LOOP": loop})


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_serve_runs_on_the_chosen_loop(tmp_path: Path, loop: str) -> None:
    expected = "asyncio" if loop == "asyncio" else "uvloop"
    if expected == "uvloop":
        pytest.importorskip("uvloop")
    port = free_port()
    proc = _serve(port, tmp_path, loop)
    try:
        wait_healthy(port)
        body = {"model": "demo-async", "prompt": "x", "size": "64x64", "delay": 0.05}
        assert get_json(f"http://127.0.0.1:{port}/v1/images/generations", body)["data"][0]["url"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"event loop: {expected}" in err.decode()


def test_an_unknown_loop_is_a_clear_start_error(tmp_path: Path) -> None:
    proc = _serve(free_port(), tmp_path, "trio")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert err.decode().strip() == (
        "pixgate: PIXGATE_EVENT_LOOP must be one of auto, uvloop, asyncio, not 'trio'"
    )
