"""GET /metrics: Prometheus text format, optionally behind PIXGATE_METRICS_KEY."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..metrics import render
from ..runtime.lifecycle.state import GatewayState
from .bearer import bearer_token
from .errors import ApiError
from .keys import METRICS, RELOADER, SETTINGS, STATE


async def live_state(state: GatewayState, reloads: dict[str, int]) -> dict[str, Any]:
    """Key and circuit states from the state backend: the fleet's view with Redis."""
    snapshot = state.snapshot
    backend = state.shared
    report = await backend.report(snapshot.providers)
    stats = backend.stats
    return {
        "keys": {pid: [row["state"] for row in entry["keys"]] for pid, entry in report.items()},
        "circuits": {pid: entry["circuit"] for pid, entry in report.items()},
        "config_version": snapshot.version,
        "config_loaded_at": snapshot.loaded_at,
        "reloads": reloads,
        "state": {
            "degraded": stats.degraded,
            "errors": stats.errors,
            "fallbacks": stats.fallbacks,
            "outages": stats.outages,
        },
        "storage": state.storage.status(),
    }


async def metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    allowed = tuple(k for k in (settings.metrics_key, settings.admin_key) if k)
    if settings.metrics_key:
        token = bearer_token(request) or ""
        if not any(hmac.compare_digest(token.encode(), k.encode()) for k in allowed):
            raise ApiError(
                401,
                "/metrics needs 'Authorization: Bearer <PIXGATE_METRICS_KEY>'",
                code="invalid_api_key",
            )
    stats = request.app[RELOADER].stats
    reloads = {"applied": stats.succeeded, "rejected": stats.failed, "unchanged": stats.unchanged}
    now = await live_state(request.app[STATE], reloads)
    request.app[METRICS].refresh()  # the counts summed so far (and live gauges) handed over
    # A multi-process scrape reads every worker's files: off the event loop.
    body = await asyncio.to_thread(render, request.app[METRICS], lambda: now)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
