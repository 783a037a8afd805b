"""Admin endpoints (PIXGATE_ADMIN_KEY): runtime state, secrets always masked."""

from __future__ import annotations

from aiohttp import web

from .jsonio import json_response
from .keys import STATE


async def keys(request: web.Request) -> web.Response:
    state = request.app[STATE]
    snapshot = state.snapshot
    service = state.service
    report = service.keys.report(snapshot.providers)
    providers = {
        pid: {
            "available": snapshot.providers[pid].available,
            "circuit": service.breakers.state(pid),
            "keys": rows,
        }
        for pid, rows in report.items()
    }
    return json_response({"config_version": snapshot.version, "providers": providers})
