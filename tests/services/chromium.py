"""Headless Chromium (Debian's `chromium`) driven by Playwright for Python, on loopback."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from . import missing, require

INSTALL = "apt-get install chromium (Debian), then pip install -e '.[dev]' (playwright)"
# As root and with no network: no sandbox, and nothing that phones home at start.
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    """PIXGATE_TEST_CHROMIUM, else `chromium` or `chromium-browser` on PATH."""
    explicit = os.environ.get("PIXGATE_TEST_CHROMIUM")
    if explicit:
        return explicit
    return shutil.which("chromium-browser") or require("chromium", INSTALL)


# Module scope: Playwright's sync API runs an event loop while it is open, and the async
# tests of later modules need the thread without one.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (Python)", INSTALL)
    path = chromium_path()
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=path, args=ARGS, timeout=30_000)
        try:
            yield instance
        finally:
            instance.close()
