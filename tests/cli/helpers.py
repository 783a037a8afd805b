"""Shared helpers for the command-line tests: run `engine.cli.main`, control the environment."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parents[2]
# Variables a developer's shell may hold that would change what a config builds into.
_LEAKY = re.compile(r"^(PIXGATE_.*|.*_API_KEYS|.*_BASE_URL)$")


def use_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    """Make os.environ (which build_snapshot and explain read) hold exactly these keys/URLs."""
    for name in list(os.environ):
        if _LEAKY.match(name):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def shipped(root: Path, *providers: str) -> Path:
    """A config dir holding copies of shipped provider files (routes.yaml is the caller's)."""
    (root / "providers.d").mkdir(parents=True, exist_ok=True)
    for pid in providers:
        shutil.copy(REPO / "providers.d" / f"{pid}.yaml", root / "providers.d" / f"{pid}.yaml")
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`pixgate ARGV...` in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
