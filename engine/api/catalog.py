"""GET /v1/models, GET /v1/models/{id}, GET /health, GET /."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from .. import __version__
from ..config.loader import ConfigSnapshot
from .errors import ApiError
from .health import state_status
from .jsonio import json_response
from .keys import STATE


def model_list(snapshot: ConfigSnapshot) -> list[dict[str, Any]]:
    """Exactly what a client may ask for: routes with a usable target, their aliases, and
    `provider/model` names (owned_by is the route, or the provider for direct names)."""
    created = int(snapshot.loaded_at)
    live: dict[str, bool] = {}
    for name, route in snapshot.routes.routes.items():
        live[name] = False
        for t in route.targets:
            provider = snapshot.providers.get(t.provider)
            if provider and t.weight > 0 and t.model in provider.models:
                live[name] = live[name] or snapshot.usable(provider)
    entries = [
        {"id": name, "object": "model", "created": created, "owned_by": f"pixgate:{name}"}
        for name, ok in live.items()
        if ok
    ]
    entries += [
        {"id": alias, "object": "model", "created": created, "owned_by": f"pixgate:{target}"}
        for alias, target in snapshot.routes.aliases.items()
        if live.get(target)
    ]
    entries += [
        {"id": name, "object": "model", "created": created, "owned_by": route.targets[0].provider}
        for name, route in snapshot.direct.items()
        if snapshot.usable(snapshot.providers[route.targets[0].provider])
    ]
    return entries


async def list_models(request: web.Request) -> web.Response:
    snapshot = request.app[STATE].snapshot
    return json_response({"object": "list", "data": model_list(snapshot)})


async def retrieve_model(request: web.Request) -> web.Response:
    """One entry of the list (ids may hold '/', as `provider/model` does); 404 otherwise."""
    model_id = request.match_info["model"]
    snapshot = request.app[STATE].snapshot
    for entry in model_list(snapshot):
        if entry["id"] == model_id:
            return json_response(entry)
    raise ApiError(
        404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
    )


async def health(request: web.Request) -> web.Response:
    """Liveness for anyone: nothing a stranger could use (versions, pids, config hashes)."""
    return json_response({"status": "ok"})


async def health_details(request: web.Request) -> web.Response:
    """GET /admin/health (admin key): what /health used to tell everyone."""
    state = request.app[STATE]
    snapshot = state.snapshot
    return json_response(
        {
            "status": "ok",
            "version": __version__,
            "config_version": snapshot.version,
            "providers": len(snapshot.providers),
            "pid": os.getpid(),
            "state": state_status(state.shared.stats),
            "storage": state.storage.status()["status"],
        }
    )


async def index(request: web.Request) -> web.Response:
    return json_response(
        {
            "name": "pixgate",
            "endpoints": ["/v1/images/generations", "/v1/models", "/health"],
        }
    )
