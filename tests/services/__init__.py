"""Real services the tests start on loopback (Redis, an S3 server, Chromium, Node).

One module per service. Each finds its binary through `require`, which fails the test under
CI=true (CI must have installed it: see .ci/run) and otherwise skips loudly, naming the
command that installs it.
"""

from __future__ import annotations

import os
import shutil
import warnings

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, how: str) -> None:
    """A test dependency is absent: fail under CI=true, else skip with a loud warning."""
    message = f"{what} is not available; install it with: {how}"
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    warnings.warn(f"SKIPPED: {message}", stacklevel=2)
    pytest.skip(message)


def require(binary: str, how: str) -> str:
    """The path of `binary` on PATH, or fail/skip through `missing`."""
    path = shutil.which(binary)
    if path is None:
        missing(f"`{binary}`", how)
        raise AssertionError("unreachable")
    return path
