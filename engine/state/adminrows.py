"""/admin/keys read from Redis: each provider's circuit and its keys' health, keys masked."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from ..dsl.spec import ProviderSpec
from ..runtime.routing.keys import mask_key
from .identity import Names


def ask(client: aioredis.Redis, names: Names, providers: dict[str, ProviderSpec]) -> Any:
    """One pipeline reading every provider's breaker and keys, with Redis's clock."""
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for pid, spec in sorted(providers.items()):
        pipe.hgetall(names.of(pid, "breaker"))
        pipe.exists(names.of(pid, "probe"))
        for key in spec.auth.keys:
            health, lease = names.key(pid, key)
            pipe.hgetall(health)
            pipe.zrangebyscore(lease, "(0", "+inf", withscores=True)
    return pipe


def read(answers: list[Any], providers: dict[str, ProviderSpec]) -> dict[str, dict[str, Any]]:
    """The report from the pipeline's answers, in the order `ask` asked."""
    seconds, micros = answers[0]
    now = int(seconds) * 1000 + int(micros) // 1000  # Redis's clock, as the scripts use
    at = 1
    out: dict[str, dict[str, Any]] = {}
    for pid, spec in sorted(providers.items()):
        breaker, probing = answers[at], answers[at + 1]
        at += 2
        rows = []
        for key in spec.auth.keys:
            h, leases = answers[at], answers[at + 1]
            at += 2
            rows.append(row(key, h, leases, now))
        out[pid] = {
            "circuit": circuit(breaker, now),
            "probe_in_flight": bool(probing),
            "circuit_changed_by": breaker.get("changed_by"),
            "keys": rows,
        }
    return out


def circuit(breaker: dict[str, str], now: int) -> str:
    open_until = int(breaker.get("open_until") or 0)
    if open_until == 0:
        return "closed"
    return "open" if open_until > now else "half_open"


def seconds(ms: str | None) -> float | None:
    return round(int(ms) / 1000, 3) if ms else None


def row(key: str, h: dict[str, str], leases: list[tuple[str, float]], now: int) -> dict[str, Any]:
    until = int(h.get("until") or 0)
    reason = h.get("reason")
    if until <= now:
        state = "probing" if reason in ("bad_key", "quota") else "healthy"
    else:
        state = {"rate_limited": "cooling_down", "bad_key": "disabled", "quota": "exhausted"}.get(
            reason or "", "cooling_down"
        )
    return {
        "key": mask_key(key),
        "state": state,
        "cooldown_remaining_s": round(max(0, until - now) / 1000, 3),
        "successes": int(h.get("successes") or 0),
        "failures": int(h.get("failures") or 0),
        "in_flight": sum(1 for _, expiry in leases if expiry > now),
        "last_error": h.get("last_error"),
        "last_error_at": seconds(h.get("last_error_at")),
        "changed_by": h.get("changed_by"),
        "changed_at": seconds(h.get("changed_at")),
    }
