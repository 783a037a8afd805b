"""Admin endpoints (PIXGATE_ADMIN_KEY): runtime state, secrets always masked."""

from __future__ import annotations

import dataclasses

from aiohttp import web
from yarl import URL

from ..runtime.routing.keys import mask_key
from .errors import ApiError, bad_request
from .health import state_status
from .jsonio import json_response
from .keys import RELOADER, STATE


async def keys(request: web.Request) -> web.Response:
    """Key health and breakers: fleet-wide with Redis (and which replica last changed what)."""
    state = request.app[STATE]
    snapshot = state.snapshot
    backend = state.shared
    report = await backend.report(snapshot.providers)
    providers = {
        pid: {"available": snapshot.providers[pid].available, **entry}
        for pid, entry in report.items()
    }
    return json_response(
        {
            "config_version": snapshot.version,
            "state": state_status(backend.stats),
            "providers": providers,
        }
    )


async def reprobe(request: web.Request) -> web.Response:
    """POST {"provider": id, "index": n}: end key n's cooldown or disabled time now, so the
    next request tries it (the n-th key of the provider's pool, as /admin/keys lists them)."""
    try:
        body = await request.json()
        provider, index = body["provider"], body["index"]
    except (ValueError, KeyError, TypeError):
        raise bad_request('send {"provider": "<id>", "index": <n>}') from None
    spec = (
        request.app[STATE].snapshot.providers.get(provider) if isinstance(provider, str) else None
    )
    keys = spec.auth.keys if spec is not None else ()
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(keys):
        raise ApiError(404, "no such provider key", code="not_found")
    await request.app[STATE].shared.reprobe(provider, keys[index])
    return json_response({"ok": True, "provider": provider, "key": mask_key(keys[index])})


async def config(request: web.Request) -> web.Response:
    """What is live, what was last refused and why; secrets masked."""
    snapshot = request.app[STATE].snapshot
    reloader = request.app[RELOADER]
    rejected = reloader.last_rejected
    routes = snapshot.routes
    body = {
        "version": snapshot.version,
        "loaded_at": snapshot.loaded_at,
        "directory": snapshot.directory,
        "files": snapshot.files,
        "reloads": dataclasses.asdict(reloader.stats),
        "last_rejected": dataclasses.asdict(rejected) if rejected else None,
        "warnings": [d.format() for d in snapshot.warnings],
        "modes": {
            "backend": routes.backend,
            "relay": routes.relay,
            "demo": routes.demo,
            "direct_models": routes.direct_models,
        },
        "routes": {
            name: {
                "strategy": r.strategy,
                "timeout": r.timeout,
                "fallbacks": list(r.fallbacks),
                "failover_on": sorted(r.failover_on),
                "targets": [dataclasses.asdict(t) for t in r.targets],
            }
            for name, r in routes.routes.items()
        },
        "aliases": routes.aliases,
        "defaults": routes.defaults,
        "providers": {
            pid: {
                "title": p.title,
                "base_url": _mask_url(p.base_url),
                "available": snapshot.usable(p),
                "keys": [mask_key(k) for k in p.auth.keys],
                "key_pattern": p.auth.key_pattern.pattern if p.auth.key_pattern else None,
                "models": sorted(p.models),
                "tasks": sorted(p.tasks),
                "policy": dataclasses.asdict(routes.policy(pid)),
            }
            for pid, p in sorted(snapshot.providers.items())
        },
    }
    return json_response(body)


async def reload(request: web.Request) -> web.Response:
    result = await request.app[RELOADER].reload("POST /admin/reload")
    return json_response(result.as_dict(), status=422 if result.status == "rejected" else 200)


def _mask_url(url: str) -> str:
    """Hide credentials someone put in a URL (user:password@host, ?key=...)."""
    parsed = URL(url)
    if parsed.user or parsed.password:
        parsed = parsed.with_user("…").with_password(None)
    if parsed.query:
        parsed = parsed.with_query({k: "…" for k in parsed.query})
    return str(parsed)
