"""Compile routes.yaml against the compiled providers, with cross-reference checks."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from ..pricing import compile_price
from .durations import parse_duration
from .spec import (
    DEFAULT_OPTIMIZER_SYSTEM,
    BreakerPolicy,
    CorsSpec,
    OptimizerSpec,
    ProviderPolicy,
    ProviderSpec,
    RouteSpec,
    RoutesSpec,
    StateSpec,
    TargetSpec,
)

Path = tuple[str | int, ...]
Report = Callable[[Path, str, str], None]


def compile_routes(
    doc: dict[str, Any],
    providers: dict[str, ProviderSpec],
    report: Report,
    broken: Collection[str] = (),
) -> RoutesSpec:
    routes: dict[str, RouteSpec] = {}
    # W407 only in a config that prices anything: one that does no costing is not nagged.
    priced = any(m.pricing for p in providers.values() for m in p.models.values()) or any(
        r.get("pricing") or any(t.get("pricing") for t in r["targets"])
        for r in (doc.get("routes") or {}).values()
    )
    for name, raw in (doc.get("routes") or {}).items():
        path: Path = ("routes", name)
        targets = []
        for i, t in enumerate(raw["targets"]):
            tpath = (*path, "targets", i)
            provider = providers.get(t["provider"])
            if provider is None and t["provider"] in broken:
                pass  # defined in providers.d/ but failed: its own diagnostics say why
            elif provider is None:
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
            elif (
                priced
                and provider.models[t["model"]].pricing is None
                and not t.get("pricing")
                and not raw.get("pricing")
            ):
                report(
                    (*tpath, "model"),
                    "W407",
                    f"'{provider.id}/{t['model']}' has no price: its images count as free"
                    " in costs and budgets",
                )
            targets.append(
                TargetSpec(
                    provider=t["provider"],
                    model=t["model"],
                    weight=float(t.get("weight", 1)),
                    priority=int(t.get("priority", 0)),
                    pricing=compile_price(t.get("pricing")),
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
            failover_on=frozenset(raw.get("failover_on") or ()),
            variation_prompt=raw.get("variation_prompt"),
            optimizer=_optimizer(
                raw.get("prompt_optimizer"), providers, (*path, "prompt_optimizer"), report, broken
            ),
            chat_context_edit=bool(raw.get("chat_context_edit", True)),
            chat_image_format=raw.get("chat_image_format", "url"),
            response_format=raw.get("response_format"),
            rehost=bool(raw.get("rehost", False)),
            pricing=compile_price(raw.get("pricing")),
            resubmit_on_loss=bool(raw.get("resubmit_on_loss", False)),
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
                f"'{alias}' is claimed by both routes.{alias} and aliases.{alias}; "
                "/v1/models would be ambiguous",
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
    policies = {}
    for pid, raw in (doc.get("providers") or {}).items():
        if pid not in providers and pid not in broken:
            report(("providers", pid), "E301", f"unknown provider '{pid}'")
        policies[pid] = _policy(raw, ("providers", pid), report)
    return RoutesSpec(
        routes=routes,
        aliases=aliases,
        defaults=defaults,
        demo=bool(doc.get("demo", True)),
        backend=bool(doc.get("backend", True)),
        relay=bool(doc.get("relay", False)),
        direct_models=bool(doc.get("direct_models", True)),
        policies=policies,
        state=_state(doc.get("state") or {}, report),
        cors=_cors(doc.get("cors"), report),
    )


def _state(raw: dict[str, Any], report: Report) -> StateSpec:
    redis = raw.get("redis") or {}
    durations: dict[str, float | None] = {}
    for name in ("timeout", "lease_ttl"):
        durations[name] = None
        if redis.get(name) is not None:
            try:
                durations[name] = parse_duration(redis[name])
            except ValueError as exc:
                report(("state", "redis", name), "E231", str(exc))
    return StateSpec(
        redis_url=redis.get("url") or None,
        prefix=redis.get("prefix"),
        timeout=durations["timeout"],
        lease_ttl=durations["lease_ttl"],
    )


def _cors(raw: dict[str, Any] | None, report: Report) -> CorsSpec:
    if raw is None:
        return CorsSpec()
    default = CorsSpec()
    max_age = default.max_age
    if raw.get("max_age") is not None:
        try:
            max_age = parse_duration(raw["max_age"])
        except ValueError as exc:
            report(("cors", "max_age"), "E231", str(exc))
    return CorsSpec(
        enabled=bool(raw.get("enabled", True)),
        allow_origins=frozenset(raw.get("allow_origins") or default.allow_origins),
        allow_methods=tuple(raw.get("allow_methods") or default.allow_methods),
        allow_headers=tuple(raw.get("allow_headers") or default.allow_headers),
        expose_headers=tuple(h.lower() for h in raw.get("expose_headers", default.expose_headers)),
        max_age=max_age,
        paths=tuple(raw.get("paths") or default.paths),
    )


def _optimizer(
    raw: dict[str, Any] | None,
    providers: dict[str, ProviderSpec],
    path: Path,
    report: Report,
    broken: Collection[str],
) -> OptimizerSpec | None:
    if not raw:
        return None
    if raw["provider"] in broken:
        pass  # its own diagnostics say why
    elif raw["provider"] not in providers:
        report((*path, "provider"), "E301", f"unknown provider '{raw['provider']}'")
    elif not providers[raw["provider"]].available:
        report(
            (*path, "provider"),
            "W405",
            f"provider '{raw['provider']}' has no keys; prompts are sent unchanged",
        )
    timeout = 15.0
    if raw.get("timeout") is not None:
        try:
            timeout = parse_duration(raw["timeout"])
        except ValueError as exc:
            report((*path, "timeout"), "E231", str(exc))
    return OptimizerSpec(
        provider=raw["provider"],
        model=raw["model"],
        system=raw.get("system") or DEFAULT_OPTIMIZER_SYSTEM,
        reasoning=bool(raw.get("reasoning", False)),
        timeout=timeout,
    )


def _policy(raw: dict[str, Any], path: Path, report: Report) -> ProviderPolicy:
    def duration(name: str, default: float, where: Path = path, src: Any = raw) -> float:
        if src.get(name) is None:
            return default
        try:
            return parse_duration(src[name])
        except ValueError as exc:
            report((*where, name), "E231", str(exc))
            return default

    breaker_raw = raw.get("circuit_breaker") or {}
    breaker_path = (*path, "circuit_breaker")
    return ProviderPolicy(
        keys_file=raw.get("keys_file"),
        key_selection=raw.get("key_selection", "round_robin"),
        max_concurrency_per_key=raw.get("max_concurrency_per_key"),
        quota_reset=duration("quota_reset", 3600.0),
        bad_key_reprobe=duration("bad_key_reprobe", 3600.0),
        max_cooldown=duration("max_cooldown", 300.0),
        breaker=BreakerPolicy(
            failures=int(breaker_raw.get("failures", 5)),
            cooldown=duration("cooldown", 30.0, breaker_path, breaker_raw),
        ),
        rehost=bool(raw.get("rehost", False)),
    )
