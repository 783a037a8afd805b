"""Compile routes.yaml against the compiled providers, with cross-reference checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .durations import parse_duration
from .spec import ProviderSpec, RouteSpec, RoutesSpec, TargetSpec

Path = tuple[str | int, ...]
Report = Callable[[Path, str, str], None]


def compile_routes(
    doc: dict[str, Any], providers: dict[str, ProviderSpec], report: Report
) -> RoutesSpec:
    routes: dict[str, RouteSpec] = {}
    for name, raw in (doc.get("routes") or {}).items():
        path: Path = ("routes", name)
        targets = []
        for i, t in enumerate(raw["targets"]):
            tpath = (*path, "targets", i)
            provider = providers.get(t["provider"])
            if provider is None:
                report(
                    (*tpath, "provider"),
                    "E301",
                    f"unknown provider '{t['provider']}'"
                    f" (known: {', '.join(sorted(providers)) or 'none'})",
                )
            elif t["model"] not in provider.models:
                report(
                    (*tpath, "model"),
                    "E302",
                    f"provider '{provider.id}' declares no model"
                    f" '{t['model']}' (declared: {', '.join(sorted(provider.models))})",
                )
            elif not provider.available:
                report(
                    (*tpath, "provider"),
                    "W402",
                    f"provider '{provider.id}' has no keys; this target is skipped",
                )
            targets.append(
                TargetSpec(
                    provider=t["provider"],
                    model=t["model"],
                    weight=float(t.get("weight", 1)),
                    priority=int(t.get("priority", 0)),
                )
            )
        timeout = None
        if raw.get("timeout") is not None:
            try:
                timeout = parse_duration(raw["timeout"])
            except ValueError as exc:
                report((*path, "timeout"), "E231", str(exc))
        routes[name] = RouteSpec(
            name=name,
            targets=tuple(targets),
            strategy=raw.get("strategy", "priority"),
            fallbacks=tuple(raw.get("fallbacks") or ()),
            timeout=timeout,
            description=raw.get("description") or "",
        )
    for name, route in routes.items():
        for i, fallback in enumerate(route.fallbacks):
            if fallback not in routes:
                report(("routes", name, "fallbacks", i), "E304", f"unknown route '{fallback}'")
    aliases: dict[str, str] = {}
    for alias, target in (doc.get("aliases") or {}).items():
        if alias in routes:
            report(
                ("aliases", alias),
                "E303",
                f"'{alias}' is both a route and an alias; /v1/models would be ambiguous",
            )
        elif target not in routes:
            report(("aliases", alias), "E304", f"alias points at unknown route '{target}'")
        else:
            aliases[alias] = target
    defaults: dict[str, str] = {}
    for task, target in (doc.get("defaults") or {}).items():
        if target in routes:
            defaults[task] = target
        elif target in aliases:
            defaults[task] = aliases[target]
        else:
            report(("defaults", task), "E304", f"default names unknown route '{target}'")
    return RoutesSpec(
        routes=routes, aliases=aliases, defaults=defaults, demo=bool(doc.get("demo", True))
    )
