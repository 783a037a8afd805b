"""Key pools: which key a request uses, and what failures do to a key's health.

State lives in memory behind `KeyPools`; it is runtime state, never config, and survives a
config reload for keys that are still configured. Keys are only ever shown masked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ...dsl.spec import ProviderPolicy, ProviderSpec
from . import retryafter
from .failures import UpstreamFailure

Clock = Callable[[], float]
BASE_COOLDOWN = 1.0


def mask_key(key: str) -> str:
    """`sk-a…9xQ`: enough to tell keys apart in output, never enough to use one."""
    if len(key) <= 8:
        return "…"
    return f"{key[:4]}…{key[-3:]}"


@dataclass(slots=True)
class KeyHealth:
    until: float = 0.0  # out of rotation until this clock time
    reason: str | None = None  # the failure kind that took it out
    strikes: int = 0  # consecutive rate limits, for the exponential cooldown
    successes: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # wall-clock time, for humans
    last_used: float = 0.0
    in_flight: int = 0

    def state(self, now: float) -> str:
        if self.until <= now:
            return "probing" if self.reason in ("bad_key", "quota") else "healthy"
        return {"rate_limited": "cooling_down", "bad_key": "disabled", "quota": "exhausted"}.get(
            self.reason or "", "cooling_down"
        )


class NoHealthyKey(Exception):
    """Every key of a provider is out of rotation; `retry_after` says when one returns."""

    def __init__(self, provider: str, retry_after: float | None) -> None:
        super().__init__(f"every key of {provider} is cooling down or disabled")
        self.provider = provider
        self.retry_after = retry_after


class KeysBusy(Exception):
    """Every healthy key of a provider is at its concurrency limit (a slot frees soon)."""


@dataclass(slots=True)
class _Rotation:
    """A provider's keys in rotation, as found for one sequence of keys at clock time
    `since`: true until `until`, when the first cooldown among them ends (inf: none rests),
    unless a key's health changes first (KeyPools drops the entry then)."""

    keys: Sequence[str]  # the sequence this was found for (told apart by identity)
    healthy: list[tuple[str, KeyHealth]]  # in the sequence's order; shared: never changed
    since: float
    until: float


class KeyPools:
    def __init__(self, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.clock = clock
        self.wall = wall
        self._health: dict[tuple[str, str], KeyHealth] = {}
        self._cursor: dict[str, int] = {}
        # Per provider, its keys in rotation: found once, not on every request.
        self._rotations: dict[str, _Rotation] = {}

    def health(self, provider: str, key: str) -> KeyHealth:
        found = self._health.get((provider, key))
        if found is None:  # not setdefault: that builds a KeyHealth on every call
            found = self._health[(provider, key)] = KeyHealth()
        return found

    def order(
        self, provider: ProviderSpec, policy: ProviderPolicy, among: Sequence[str] | None = None
    ) -> list[str | None]:
        """Healthy keys to try for one request, best first. Raises NoHealthyKey."""
        keys = provider.auth.keys if among is None else among
        if not keys:
            return [None]
        healthy = self._healthy(provider.id, policy, keys, self.clock())
        limit = policy.max_concurrency_per_key
        if limit is None:
            return [key for key, _ in healthy]
        # busy keys only when nothing else is left
        free = [key for key, health in healthy if health.in_flight < limit]
        busy = [key for key, health in healthy if health.in_flight >= limit]
        return [*free, *busy]

    def _healthy(
        self, provider: str, policy: ProviderPolicy, keys: Sequence[str], now: float
    ) -> Sequence[tuple[str, KeyHealth]]:
        """`keys` (not empty) in rotation order at clock time `now`, those out of rotation
        left out, each with its health. Moves the round-robin cursor. Raises NoHealthyKey."""
        found = self._rotations.get(provider)
        if found is None or found.keys is not keys or not found.since <= now < found.until:
            found = self._rotations[provider] = self._rotation(provider, keys, now)
        healthy = found.healthy
        if not healthy:
            raise NoHealthyKey(provider, max(0.0, found.until - now))
        if policy.key_selection == "least_recently_used":
            return sorted(healthy, key=lambda pair: pair[1].last_used)
        start = self._cursor.get(provider, 0) % len(healthy)
        self._cursor[provider] = start + 1
        return healthy[start:] + healthy[:start] if start else healthy

    def _rotation(self, provider: str, keys: Sequence[str], now: float) -> _Rotation:
        known = [(key, self.health(provider, key)) for key in keys]
        resting = [health.until for _, health in known if health.until > now]
        healthy = [pair for pair in known if pair[1].until <= now]
        return _Rotation(keys, healthy, now, min(resting, default=math.inf))

    def reprobe(self, provider: str, key: str) -> None:
        """Back into rotation now (an operator's reprobe); its last error is kept."""
        self.health(provider, key).until = 0.0
        self._rotations.pop(provider, None)

    def pick(
        self, provider: ProviderSpec, policy: ProviderPolicy, exclude: Collection[str] = ()
    ) -> str:
        """Take one healthy key under its concurrency limit (a hard limit): counted in flight
        until `give`. The first in `order` that is not at its limit. Raises NoHealthyKey, or
        KeysBusy when every healthy key is full."""
        keys = (
            [k for k in provider.auth.keys if k not in exclude] if exclude else provider.auth.keys
        )
        if not keys:
            raise NoHealthyKey(provider.id, None)
        limit = policy.max_concurrency_per_key
        now = self.clock()
        for key, health in self._healthy(provider.id, policy, keys, now):
            if limit is None or health.in_flight < limit:
                health.in_flight += 1  # as take() does, without looking the key up again
                health.last_used = now
                return key
        raise KeysBusy(provider.id)

    def take(self, provider: str, key: str) -> None:
        health = self.health(provider, key)
        health.in_flight += 1
        health.last_used = self.clock()

    def give(self, provider: str, key: str) -> None:
        # every attempt's: found directly (`health` makes the entry of a key never seen)
        health = self._health.get((provider, key)) or self.health(provider, key)
        health.in_flight = max(0, health.in_flight - 1)

    @contextmanager
    def use(self, provider: str, key: str | None) -> Iterator[None]:
        if key is None:
            yield
            return
        health = self.health(provider, key)
        health.in_flight += 1
        health.last_used = self.clock()
        try:
            yield
        finally:
            health.in_flight -= 1

    def succeeded(self, provider: str, key: str | None) -> None:
        if key is None:
            return
        health = self._health.get((provider, key)) or self.health(provider, key)
        health.successes += 1
        health.strikes = 0
        if health.until:  # it was resting (as this process saw it): rotation changes
            self._rotations.pop(provider, None)
        health.until, health.reason = 0.0, None

    def failed(
        self, provider: str, key: str | None, failure: UpstreamFailure, policy: ProviderPolicy
    ) -> None:
        if key is None:
            return
        health = self.health(provider, key)
        self._rotations.pop(provider, None)  # it may rest from now on
        health.failures += 1
        health.last_error = failure.kind
        health.last_error_at = self.wall()
        now = self.clock()
        if failure.kind == "rate_limited":
            health.strikes += 1
            wait = retryafter.clamp(failure.retry_after, policy.max_cooldown)
            if wait is None:
                wait = min(policy.max_cooldown, BASE_COOLDOWN * 2 ** (health.strikes - 1))
            health.until, health.reason = now + wait, "rate_limited"
        elif failure.kind == "bad_key":
            health.until, health.reason = now + policy.bad_key_reprobe, "bad_key"
        elif failure.kind == "quota":
            health.until, health.reason = now + policy.quota_reset, "quota"

    def retain(self, providers: dict[str, ProviderSpec]) -> None:
        """After a reload: keep state only for keys that are still configured."""
        live = {(pid, k) for pid, p in providers.items() for k in p.auth.keys}
        for item in [k for k in self._health if k not in live]:
            del self._health[item]
        self._rotations.clear()

    def report(self, providers: dict[str, ProviderSpec]) -> dict[str, list[dict[str, Any]]]:
        """Per provider, per masked key: state and counters (for GET /admin/keys)."""
        now = self.clock()
        out: dict[str, list[dict[str, Any]]] = {}
        for pid, spec in sorted(providers.items()):
            rows = []
            for key in spec.auth.keys:
                h = self.health(pid, key)
                rows.append(
                    {
                        "key": mask_key(key),
                        "state": h.state(now),
                        "cooldown_remaining_s": round(max(0.0, h.until - now), 3),
                        "successes": h.successes,
                        "failures": h.failures,
                        "in_flight": h.in_flight,
                        "last_error": h.last_error,
                        "last_error_at": h.last_error_at,
                    }
                )
            out[pid] = rows
        return out
