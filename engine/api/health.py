"""GET /health/live and /health/ready: what an orchestrator's probes ask.

Live: the process answers. Ready: the config is loaded, the gateway is not draining for a
shutdown, and the state backend answers (or is reported degraded: with Redis down the gateway
still serves on local state, so it stays ready; taking every replica out would fail every
request instead of none). Storage likewise: while the store fails, images are kept locally.
"""

from __future__ import annotations

from aiohttp import web

from ..state import StateStats
from .jsonio import json_response
from .keys import STATE


async def live(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.draining:
        return json_response({"status": "draining"}, status=503)
    backend = state.shared
    reachable = await backend.ready()
    degraded = backend.stats.degraded or not reachable
    return json_response({"status": "ready", "state": "degraded" if degraded else "ok"})


def state_status(stats: StateStats) -> dict[str, object]:
    """The state backend, as /admin/keys and readiness report it."""
    return {
        "backend": stats.backend,
        "status": "degraded" if stats.degraded else "ok",
        "degraded_since": stats.degraded_since,
        "errors": stats.errors,
        "fallbacks": stats.fallbacks,
        "outages": stats.outages,
    }
