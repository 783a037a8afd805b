"""Rows of /admin/keys read from Redis: a breaker's circuit and a key's health, keys masked."""

from __future__ import annotations

from typing import Any

from ..runtime.routing.keys import mask_key


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
