"""State in this process: today's behaviour, and what a Redis-backed gateway falls back on."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Collection, Sequence
from typing import Any

from ..dsl.spec import ProviderPolicy, ProviderSpec
from ..runtime.routing.breaker import Breakers, Permit
from ..runtime.routing.failures import UpstreamFailure
from ..runtime.routing.keys import KeyPools, KeysBusy, NoHealthyKey
from .base import RELEASED, Denied, Grant, StateStats
from .identity import KeyIds


class MemoryState:
    """Key health, breakers, cursors and in-flight counts of one process."""

    def __init__(self, keys: KeyPools | None = None, breakers: Breakers | None = None) -> None:
        self.keys = keys or KeyPools()
        self.breakers = breakers or Breakers()
        self.stats = StateStats()
        self._windows: dict[str, tuple[int, int]] = {}  # name -> (window index, count)
        self._usage: dict[str, dict[str, float]] = {}
        self._usage_expiry: dict[str, float] = {}  # name -> when its totals expire
        self.usage_changes = 0  # grows with every addition (the usage file flushes on change)
        self._jobs: dict[str, tuple[float, dict[str, Any]]] = {}
        self._job_index: dict[str, dict[str, float]] = {}  # owner -> job id -> created
        self._job_leases: dict[str, tuple[str, float]] = {}  # job id -> (holder, until)
        self._active_jobs: set[str] = set()
        self._cancels: dict[str, float] = {}  # job id -> until
        self.durable_jobs = False  # a restart loses every record: nothing to hand over
        self._tokens = itertools.count(1)  # grant tokens: only told apart within this process
        # Pool keys' ids in job checkpoints (state.key_ids): this process's own secret.
        self.key_ids = KeyIds(secrets.token_hex(16))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None  # leases of a process that stops die with it

    async def ready(self) -> bool:
        return True

    async def acquire(
        self,
        provider: ProviderSpec,
        policy: ProviderPolicy,
        *,
        pool: bool = True,
        exclude: Collection[str] = (),
    ) -> Grant:
        return self.acquire_nowait(provider, policy, pool=pool, exclude=exclude)

    def acquire_nowait(
        self,
        provider: ProviderSpec,
        policy: ProviderPolicy,
        *,
        pool: bool = True,
        exclude: Collection[str] = (),
    ) -> Grant:
        """Never waits: in-process state answers at once (`acquire` is this, as a coroutine)."""
        pid = provider.id
        permit = self.breakers.allow(pid, policy.breaker)
        if permit is None:
            raise Denied(pid, "circuit_open")
        grant = Grant(pid, None, f"m{next(self._tokens)}", probe=permit.probe, handle=permit)
        if not pool or not provider.auth.keys:
            return grant
        try:
            grant.key = self.keys.pick(provider, policy, exclude)
        except (NoHealthyKey, KeysBusy) as exc:
            self.breakers.release(permit)  # a probe slot goes back: nothing reached the provider
            if isinstance(exc, NoHealthyKey):
                raise Denied(pid, "no_key", exc.retry_after) from None
            raise Denied(pid, "busy") from None
        grant.leased = True
        return grant

    async def settle(
        self,
        grant: Grant,
        policy: ProviderPolicy,
        kind: str | None,
        retry_after: float | None = None,
        *,
        wait: bool = True,
    ) -> None:
        self.settle_nowait(grant, policy, kind, retry_after)

    def settle_nowait(
        self,
        grant: Grant,
        policy: ProviderPolicy,
        kind: str | None,
        retry_after: float | None = None,
    ) -> bool:
        """Never waits: always done (True)."""
        provider, key = grant.provider, grant.key
        if grant.leased and key is not None:
            grant.leased = False
            self.keys.give(provider, key)
        if kind is None:  # a success, every request's: `record`'s, written out
            if key is not None:
                self.keys.succeeded(provider, key)
            self.breakers.record(provider, None, policy.breaker)
        elif kind != RELEASED:  # an outcome settles the breaker's probe too
            self.record(provider, key, policy, kind, retry_after)
        elif isinstance(grant.handle, Permit):  # none: a probe's slot goes back
            self.breakers.release(grant.handle)
        return True

    def record(
        self,
        provider: str,
        key: str | None,
        policy: ProviderPolicy,
        kind: str | None,
        retry_after: float | None = None,
    ) -> None:
        """An attempt's verdict on key health and the breaker (no lease involved)."""
        if key is not None:
            if kind is None:
                self.keys.succeeded(provider, key)
            else:
                failure = UpstreamFailure(kind, kind, retry_after=retry_after)
                self.keys.failed(provider, key, failure, policy)
        self.breakers.record(provider, kind, policy.breaker)

    async def report(self, providers: dict[str, ProviderSpec]) -> dict[str, dict[str, Any]]:
        return self.report_now(providers)

    async def reprobe(self, provider: str, key: str) -> None:
        self.keys.reprobe(provider, key)

    def report_now(self, providers: dict[str, ProviderSpec]) -> dict[str, dict[str, Any]]:
        rows = self.keys.report(providers)
        return {
            pid: {"circuit": self.breakers.state(pid), "keys": rows[pid]} for pid in sorted(rows)
        }

    def retain(self, providers: dict[str, ProviderSpec]) -> None:
        self.keys.retain(providers)
        self.key_ids.forget({(pid, k) for pid, p in providers.items() for k in p.auth.keys})

    async def hit(self, name: str, window: float, amount: int = 1) -> int:
        index = int(time.time() // window)
        seen, count = self._windows.get(name, (index, 0))
        count = (count if seen == index else 0) + amount
        self._windows[name] = (index, count)
        return count

    async def add_usage(
        self, name: str, amounts: dict[str, float], ttl: float | None = None
    ) -> dict[str, float]:
        totals = self._live_usage(name)
        for field, amount in amounts.items():
            totals[field] = totals.get(field, 0.0) + amount
        self._usage[name] = totals
        if ttl is not None:
            self._usage_expiry[name] = time.time() + ttl
        self.usage_changes += 1
        return {f: totals[f] for f in amounts}

    async def get_usage(self, name: str) -> dict[str, float]:
        return dict(self._live_usage(name))

    async def reserve(
        self, names: Sequence[str], field: str, amount: float, limits: Sequence[float], ttl: float
    ) -> tuple[bool, list[float]]:
        before = [self._live_usage(n).get(field, 0.0) for n in names]
        if any(b + amount > lim for b, lim in zip(before, limits, strict=True)):
            return False, before
        for name in names:
            await self.add_usage(name, {field: amount}, ttl)
        return True, before

    def _live_usage(self, name: str) -> dict[str, float]:
        until = self._usage_expiry.get(name)
        if until is not None and until <= time.time():
            self._usage.pop(name, None)
            self._usage_expiry.pop(name, None)
        return self._usage.get(name, {})

    def export_usage(self) -> dict[str, Any]:
        """The running totals and their expiry times (for a file a restart reads back)."""
        now = time.time()
        for name in [n for n, until in self._usage_expiry.items() if until <= now]:
            self._usage.pop(name, None)
            self._usage_expiry.pop(name, None)
        return {
            "totals": {n: dict(t) for n, t in self._usage.items()},
            "expires": dict(self._usage_expiry),
        }

    def import_usage(self, saved: dict[str, Any]) -> None:
        """Add saved totals to the live ones (a restart reading its file back)."""
        expires = saved.get("expires") or {}
        for name, totals in (saved.get("totals") or {}).items():
            until = expires.get(name)
            if until is not None and until <= time.time():
                continue
            live = self._usage.setdefault(name, {})
            for field, value in totals.items():
                live[field] = live.get(field, 0.0) + float(value)
            if until is not None:
                self._usage_expiry[name] = float(until)

    async def put_job(self, job_id: str, record: dict[str, Any], ttl: float) -> None:
        now = time.time()
        for old in [j for j, (until, _) in self._jobs.items() if until <= now]:
            del self._jobs[old]
        self._jobs[job_id] = (now + ttl, dict(record))

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        found = self._jobs.get(job_id)
        if found is None or found[0] <= time.time():
            return None
        return dict(found[1])

    async def claim_job(
        self, job_id: str, record: dict[str, Any], ttl: float
    ) -> dict[str, Any] | None:
        found = await self.get_job(job_id)
        if found is not None:
            return found
        await self.put_job(job_id, record, ttl)
        return None

    async def claim_first(self, job_id: str, record: dict[str, Any], ttl: float) -> bool | None:
        return await self.claim_job(job_id, record, ttl) is None

    async def index_job(self, owner: str, job_id: str, created: float, ttl: float) -> None:
        jobs = self._job_index.setdefault(owner, {})
        jobs[job_id] = created
        horizon = time.time() - ttl  # ids whose records have expired leave the list
        for old in [j for j, at in jobs.items() if at < horizon]:
            del jobs[old]

    async def job_ids(
        self, owner: str, before: float | None, limit: int
    ) -> list[tuple[str, float]]:
        jobs = self._job_index.get(owner, {})
        rows = sorted(
            ((j, at) for j, at in jobs.items() if before is None or at < before),
            key=lambda row: row[1],
            reverse=True,
        )
        return rows[:limit]

    async def lease_job(self, job_id: str, holder: str, ttl: float) -> bool:
        now = time.monotonic()
        found = self._job_leases.get(job_id)
        if found is not None and found[0] != holder and found[1] > now:
            return False
        self._job_leases[job_id] = (holder, now + ttl)
        return True

    async def release_job(self, job_id: str, holder: str) -> None:
        found = self._job_leases.get(job_id)
        if found is not None and found[0] == holder:
            del self._job_leases[job_id]

    async def mark_active(self, job_id: str, active: bool) -> None:
        if active:
            self._active_jobs.add(job_id)
        else:
            self._active_jobs.discard(job_id)
            self._cancels.pop(job_id, None)

    async def active_jobs(self) -> list[str]:
        return sorted(self._active_jobs)

    async def flag_cancel(self, job_id: str, ttl: float) -> None:
        self._cancels[job_id] = time.monotonic() + ttl

    async def cancel_flags(self, job_ids: list[str]) -> set[str]:
        now = time.monotonic()
        return {j for j in job_ids if self._cancels.get(j, 0.0) > now}
