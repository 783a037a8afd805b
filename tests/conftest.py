from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway import REPO, Gateway, run_gateway
from tests.openapi import load_spec

# shared/reference/ beside the checkout (or beside a folder holding worktrees).
OPENAPI_CANDIDATES = [p / "shared" / "reference" / "openai-openapi.yaml" for p in REPO.parents]


@pytest.fixture
async def demo_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The shipped config (demo upstream on), no client keys."""
    async with run_gateway(REPO, tmp_path / "files") as gw:
        yield gw


@pytest.fixture(scope="session")
def openai_spec() -> dict[str, Any]:
    """OpenAI's published OpenAPI document, the contract for responses: $PIXGATE_OPENAI_SPEC,
    else shared/reference/openai-openapi.yaml in a folder above the checkout. Missing, it
    fails the run under CI=true and skips loudly otherwise."""
    explicit = os.environ.get("PIXGATE_OPENAI_SPEC")
    found = [p for p in OPENAPI_CANDIDATES if p.is_file()]
    return load_spec(Path(explicit) if explicit else (found or OPENAPI_CANDIDATES)[0])
