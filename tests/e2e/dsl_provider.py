"""A gateway around one provider file written by the test (DSL capabilities end to end)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import yaml
from aiohttp import web

from tests.gateway import run_gateway
from tests.upstreams import serve_upstream


def provider_doc(
    steps: list[dict[str, Any]], task: str = "generate", **extra: Any
) -> dict[str, Any]:
    """A provider `t` serving model `m` for `task` with `steps`, keyless, at ${T_BASE_URL}."""
    model: dict[str, Any] = {"tasks": [task], "max_n": 4}
    model.update(extra.pop("model", {}))
    return {
        "id": "t",
        "title": "DSL capability test",
        "base_url": "${T_BASE_URL}",
        "auth": {"required": False},
        "models": {"m": model},
        "tasks": {task: {"steps": steps, **extra.pop("task", {})}},
        **extra,
    }


@contextlib.asynccontextmanager
async def gateway_sdk(
    tmp: Path, doc: dict[str, Any], upstream: web.Application
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The upstream served on loopback, a gateway whose route `m` is provider `t`, and an SDK
    client of that gateway."""
    root = tmp / "config"
    (root / "providers.d").mkdir(parents=True, exist_ok=True)
    (root / "providers.d" / "t.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    routes = {"demo": False, "routes": {"m": {"targets": [{"provider": "t", "model": "m"}]}}}
    (root / "routes.yaml").write_text(yaml.safe_dump(routes))
    async with serve_upstream(upstream) as base:
        async with run_gateway(root, tmp / "files", {"T_BASE_URL": base}) as gw:
            async with openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk:
                yield sdk
