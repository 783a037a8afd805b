from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gateway import REPO, Gateway, run_gateway

OPENAPI = REPO.parent / "shared" / "reference" / "openai-openapi.yaml"


@pytest.fixture
async def demo_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The shipped config (demo upstream on), no client keys."""
    async with run_gateway(REPO, tmp_path / "files") as gw:
        yield gw


@pytest.fixture(scope="session")
def openai_spec() -> dict[str, Any]:
    """OpenAI's published OpenAPI document (shared/reference), the contract for responses."""
    if not OPENAPI.is_file():
        pytest.skip(f"OpenAI spec not found at {OPENAPI}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with OPENAPI.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=loader)  # type: ignore[no-any-return]
