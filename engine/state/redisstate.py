"""State shared by a fleet through Redis, failing open onto this process's memory state.

Each upstream attempt costs one Lua call to begin (breaker, key choice, lease) and one to
settle. When Redis is down or slower than the timeout, requests go on with local state: one
warning, counters in `stats`, reconnection with backoff in the background, and the fleet
converges again through Redis once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Collection
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..dsl.spec import ProviderPolicy, ProviderSpec
from ..runtime.routing.keys import mask_key
from . import scripts
from .base import RELEASED, Denied, Grant, StateStats
from .config import RedisConfig
from .identity import KeyIds
from .memory import MemoryState

log = logging.getLogger("pixgate.state")
T = TypeVar("T")
BASE_COOLDOWN_MS = 1000
KEEP_ROWS_MS = 7 * 24 * 3600 * 1000  # health rows (counters) outlive their last change by this
BACKOFF_FIRST, BACKOFF_CAP = 0.1, 5.0
FAILURES = (RedisError, OSError, TimeoutError, ConnectionError)


class RedisState:
    def __init__(self, config: RedisConfig, local: MemoryState | None = None) -> None:
        self.config = config
        self.local = local or MemoryState()
        self.stats = StateStats(backend="redis", extra={"prefix": config.prefix})
        self.ids = KeyIds(config.secret)
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            config.url,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
            max_connections=256,
            decode_responses=True,
            retry_on_timeout=False,
        )
        self._acquire = self.client.register_script(scripts.ACQUIRE)
        self._settle = self.client.register_script(scripts.SETTLE)
        self._renew = self.client.register_script(scripts.RENEW)
        self._hit = self.client.register_script(scripts.HIT)
        self._held: dict[str, str] = {}  # token -> its key's lease set, renewed until settled
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    # --- keys -------------------------------------------------------------------------------

    def _k(self, provider: str, *parts: str) -> str:
        # {provider} is a hash tag: one provider's keys share a Redis Cluster slot.
        return ":".join((self.config.prefix, "{" + provider + "}", *parts))

    def _key_names(self, provider: str, key: str) -> tuple[str, str]:
        kid = self.ids(provider, key)
        return self._k(provider, "key", kid), self._k(provider, "lease", kid)

    # --- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        if not await self.ready():
            self._down(None)
        self._heartbeat = asyncio.create_task(self._renew_loop())

    async def close(self) -> None:
        """Give back every lease still held (graceful shutdown), then close the pool."""
        if self._tasks:  # settles sent in the background
            await asyncio.wait(list(self._tasks), timeout=self.config.timeout * 4)
        for task in (self._heartbeat, self._reconnecting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        leases = [(lease, token) for token, lease in self._held.items()]
        if leases and not self.stats.degraded:
            # A probe slot is left to expire (one cooldown): by now it may be another's.
            pipe = self.client.pipeline(transaction=False)
            for lease, token in leases:
                pipe.zrem(lease, token)
            await self._guard(pipe.execute())
        self._held.clear()
        with contextlib.suppress(*FAILURES):
            await self.client.aclose()

    async def ready(self) -> bool:
        try:
            async with asyncio.timeout(self.config.timeout * 4):
                return bool(await self.client.ping())
        except FAILURES:
            return False

    # --- failing open -------------------------------------------------------------------------

    async def _guard(self, call: Awaitable[T]) -> T | None:
        """The call's result, or None when Redis failed (and local state must serve)."""
        try:
            async with asyncio.timeout(self.config.timeout):
                return await call
        except FAILURES as exc:
            if asyncio.iscoroutine(call):
                call.close()
            self.stats.errors += 1
            self._down(exc)
            return None

    def _down(self, exc: BaseException | None) -> None:
        self.stats.fallbacks += 1
        if self.stats.degraded:
            return
        self.stats.degraded = True
        self.stats.outages += 1
        self.stats.degraded_since = time.time()
        log.warning(
            "state: Redis unreachable (%s); serving on this replica's local state until it "
            "is back (keys, breakers and limits are not shared meanwhile)",
            type(exc).__name__ if exc else "no answer to PING",
        )
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            await asyncio.sleep(delay)
            if await self.ready():
                self.stats.degraded = False
                self.stats.degraded_since = None
                log.warning("state: Redis is back; sharing state with the fleet again")
                return
            delay = min(BACKOFF_CAP, delay * 2)

    # --- attempts ---------------------------------------------------------------------------

    async def acquire(
        self,
        provider: ProviderSpec,
        policy: ProviderPolicy,
        *,
        pool: bool = True,
        exclude: Collection[str] = (),
    ) -> Grant:
        if self.stats.degraded:
            self.stats.fallbacks += 1
            return self.local.acquire_now(provider, policy, pool=pool, exclude=exclude)
        pid = provider.id
        candidates = [k for k in provider.auth.keys if k not in exclude] if pool else []
        if pool and provider.auth.keys and not candidates:
            raise Denied(pid, "no_key")
        token = f"{self.config.replica}/{secrets.token_hex(6)}"
        names = [self._k(pid, "breaker"), self._k(pid, "probe"), self._k(pid, "cursor")]
        for candidate in candidates:
            names.extend(self._key_names(pid, candidate))
        limit = policy.max_concurrency_per_key or 0
        lru = "1" if policy.key_selection == "least_recently_used" else "0"
        ttl_ms = int(self.config.lease_ttl * 1000)
        # A probe's slot lasts one cooldown, renewed or not: a probe that hangs (or whose
        # replica died) does not keep the provider shut (the memory breaker's rule too).
        probe_ms = max(1, int(policy.breaker.cooldown * 1000))
        args: list[str | int] = [
            token, self.config.replica, ttl_ms, probe_ms, limit, lru, len(candidates)
        ]  # fmt: skip
        answer = await self._guard(self._acquire(keys=names, args=args))
        if answer is None:
            return self.local.acquire_now(provider, policy, pool=pool, exclude=exclude)
        verdict, number, probe = str(answer[0]), int(answer[1]), bool(int(answer[2]))
        if verdict == "open":
            raise Denied(pid, "circuit_open", number / 1000 or None)
        if verdict == "nokey":
            raise Denied(pid, "no_key", max(0.0, number / 1000))
        if verdict == "busy":
            raise Denied(pid, "busy")
        key = candidates[number - 1] if number else None
        grant = Grant(pid, key, token, probe=probe, leased=key is not None, via="redis")
        if key is not None:
            self.local.keys.take(pid, key)  # this replica's own view, for a fall-back
        if key is not None:
            self._held[token] = names[2 + 2 * number]
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
        """With wait=False the Redis call goes out after the caller moves on (a success, a
        cancellation): it costs the request no round trip. close() waits for those."""
        if grant.via != "redis":
            self.local.settle_now(grant, policy, kind, retry_after)
            return
        self._held.pop(grant.token, None)
        if grant.key is not None:
            self.local.keys.give(grant.provider, grant.key)
        if kind != RELEASED:  # what this replica learnt serves it if Redis goes away
            self.local.record(grant.provider, grant.key, policy, kind, retry_after)
        pid = grant.provider
        breaker = self._k(pid, "breaker")
        health, lease = self._key_names(pid, grant.key) if grant.key else (breaker, breaker)
        names = [breaker, self._k(pid, "probe"), health, lease]
        args: list[str | int] = [
            grant.token,
            self.config.replica,
            "" if kind is None else kind,
            "" if retry_after is None else int(retry_after * 1000),
            int(policy.max_cooldown * 1000),
            int(policy.bad_key_reprobe * 1000),
            int(policy.quota_reset * 1000),
            policy.breaker.failures,
            int(policy.breaker.cooldown * 1000),
            "1" if grant.key else "0",
            "1" if grant.probe else "0",
            BASE_COOLDOWN_MS,
            KEEP_ROWS_MS,
        ]
        if wait:
            await self._guard(self._settle(keys=names, args=args))
        else:
            task = asyncio.create_task(self._guard(self._settle(keys=names, args=args)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # On failure the lease expires by its TTL (no renewal) and the probe slot likewise.

    async def _renew_loop(self) -> None:
        """Renew this replica's key leases: one that dies stops renewing, and they expire."""
        every = max(0.05, self.config.lease_ttl / 3)
        while True:
            await asyncio.sleep(every)
            if self.stats.degraded or not self._held:
                continue
            held = list(self._held.items())
            keys = [lease for _, lease in held]
            tokens: list[Any] = [token for token, _ in held]
            ttl_ms = int(self.config.lease_ttl * 1000)
            await self._guard(self._renew(keys=keys, args=[*tokens, len(held), ttl_ms]))

    # --- reading, for /admin/keys -----------------------------------------------------------

    async def report(self, providers: dict[str, ProviderSpec]) -> dict[str, dict[str, Any]]:
        """Fleet-wide state from Redis (this replica's own when Redis is unreachable)."""
        if self.stats.degraded:
            return self._local_report(providers)
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        for pid, spec in sorted(providers.items()):
            pipe.hgetall(self._k(pid, "breaker"))
            pipe.exists(self._k(pid, "probe"))
            for key in spec.auth.keys:
                health, lease = self._key_names(pid, key)
                pipe.hgetall(health)
                pipe.zrangebyscore(lease, "(0", "+inf", withscores=True)
        answers = await self._guard(pipe.execute())
        if answers is None:
            return self._local_report(providers)
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
                rows.append(_row(key, h, leases, now))
            out[pid] = {
                "circuit": _circuit(breaker, now),
                "probe_in_flight": bool(probing),
                "circuit_changed_by": breaker.get("changed_by"),
                "keys": rows,
            }
        return out

    async def reprobe(self, provider: str, key: str) -> None:
        await self.local.reprobe(provider, key)
        health, _ = self._key_names(provider, key)
        now_ms = str(int(time.time() * 1000))
        # In the past but not 0: the key still counts as resting, so its next success
        # clears its last verdict (the settle script's rule).
        fields: dict[str | bytes, str | bytes] = {
            "until": "1", "changed_by": self.config.replica, "changed_at": now_ms,
        }  # fmt: skip
        await self._guard(self.client.hset(health, mapping=fields))  # type: ignore[arg-type]

    def _local_report(self, providers: dict[str, ProviderSpec]) -> dict[str, dict[str, Any]]:
        report = self.local.report_now(providers)
        for entry in report.values():
            entry["source"] = "local (Redis unreachable)"
        return report

    def retain(self, providers: dict[str, ProviderSpec]) -> None:
        self.local.retain(providers)
        self.ids.forget({(pid, k) for pid, p in providers.items() for k in p.auth.keys})

    # --- hooks: counters and job records ----------------------------------------------------

    def _plain(self, *parts: str) -> str:
        return ":".join((self.config.prefix, *parts))

    async def hit(self, name: str, window: float, amount: int = 1) -> int:
        index = int(time.time() // window)
        key = self._plain("hits", name, str(index))
        count = await self._guard(self._hit(keys=[key], args=[amount, int(window * 2000)]))
        if count is None:
            return await self.local.hit(name, window, amount)
        return int(count)

    async def add_usage(self, name: str, amounts: dict[str, float]) -> dict[str, float]:
        key = self._plain("usage", name)
        pipe = self.client.pipeline(transaction=True)  # MULTI: all of one request or none
        for field, amount in amounts.items():
            pipe.hincrbyfloat(key, field, amount)
        totals = await self._guard(pipe.execute())
        if totals is None:
            return await self.local.add_usage(name, amounts)
        return {f: float(v) for f, v in zip(amounts, totals, strict=True)}

    async def put_job(self, job_id: str, record: dict[str, Any], ttl: float) -> None:
        payload = json.dumps(record, separators=(",", ":"))
        done = await self._guard(
            self.client.set(self._plain("job", job_id), payload, px=int(ttl * 1000))
        )
        if done is None:
            await self.local.put_job(job_id, record, ttl)

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        if self.stats.degraded:
            return await self.local.get_job(job_id)
        raw = await self._guard(self.client.get(self._plain("job", job_id)))
        if raw is None:
            return await self.local.get_job(job_id)
        found = json.loads(raw)
        return found if isinstance(found, dict) else None

    async def claim_job(
        self, job_id: str, record: dict[str, Any], ttl: float
    ) -> dict[str, Any] | None:
        payload = json.dumps(record, separators=(",", ":"))
        key = self._plain("job", job_id)
        stored = await self._guard(self.client.set(key, payload, px=int(ttl * 1000), nx=True))
        if stored is None and self.stats.degraded:
            return await self.local.claim_job(job_id, record, ttl)
        if stored:
            return None
        return await self.get_job(job_id) or record  # lost the race (or it just expired)

    async def index_job(self, owner: str, job_id: str, created: float, ttl: float) -> None:
        key = self._plain("jobs", owner)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(key, {job_id: created})
        pipe.zremrangebyscore(key, "-inf", time.time() - ttl)
        pipe.pexpire(key, int(ttl * 1000))
        if await self._guard(pipe.execute()) is None:
            await self.local.index_job(owner, job_id, created, ttl)

    async def job_ids(
        self, owner: str, before: float | None, limit: int
    ) -> list[tuple[str, float]]:
        if self.stats.degraded:
            return await self.local.job_ids(owner, before, limit)
        top = f"({before}" if before is not None else "+inf"
        rows = await self._guard(
            self.client.zrevrangebyscore(
                self._plain("jobs", owner), top, "-inf", start=0, num=limit, withscores=True
            )
        )
        if rows is None:
            return await self.local.job_ids(owner, before, limit)
        return [(str(row[0]), float(row[1])) for row in rows]


def _circuit(breaker: dict[str, str], now: int) -> str:
    open_until = int(breaker.get("open_until") or 0)
    if open_until == 0:
        return "closed"
    return "open" if open_until > now else "half_open"


def _seconds(ms: str | None) -> float | None:
    return round(int(ms) / 1000, 3) if ms else None


def _row(key: str, h: dict[str, str], leases: list[tuple[str, float]], now: int) -> dict[str, Any]:
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
        "last_error_at": _seconds(h.get("last_error_at")),
        "changed_by": h.get("changed_by"),
        "changed_at": _seconds(h.get("changed_at")),
    }
