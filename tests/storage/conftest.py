"""Storage tests run against a real SeaweedFS (tests/services/s3.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gateway import REPO
from tests.services.s3 import S3Server, s3_server

__all__ = ["s3_server"]


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The AWS chain's environment variables, for in-process gateways and backends."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    yield s3_server.env


def s3_section(server: S3Server, bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "s3",
        "bucket": bucket,
        "prefix": "img/",
        "endpoint_url": server.endpoint,
        "region": "us-east-1",
        **extra,
    }


def demo_config(tmp: Path, storage: dict[str, Any] | None, **route: Any) -> Path:
    """A config dir with the demo provider, route `demo`, and the given storage section."""
    root = tmp / "config"
    (root / "providers.d").mkdir(parents=True, exist_ok=True)
    for pid in ("demo",):
        text = (REPO / "providers.d" / f"{pid}.yaml").read_text()
        (root / "providers.d" / f"{pid}.yaml").write_text(text)
    doc: dict[str, Any] = {
        "demo": True,
        "routes": {"demo": {"targets": [{"provider": "demo", "model": "demo-v1"}], **route}},
    }
    if storage is not None:
        doc["storage"] = storage
    (root / "routes.yaml").write_text(yaml.safe_dump(doc))
    return root
