"""State shared by a fleet through Redis, failing open onto this process's memory state.

An upstream attempt asks Redis only what this replica cannot know from its cache:
- a provider without a per-key concurrency limit, breaker closed and a key healthy in the
  cache (at most `cache_ttl` old, dropped on any published change): no round trip at all;
- otherwise one Lua call (breaker, key choice, lease), as the fleet-wide limit and the
  breaker's single probe need.
A success or a cancellation settles without a round trip of its own when it changes nothing
others cache: the lease release and the success count go out batched (outbox.py). A failure
is one Lua call that records it and publishes the change.

When Redis is down or slower than the timeout, requests go on with local state: one warning,
counters in `stats`, reconnection with backoff in the background, and the fleet converges
again through Redis once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Collection
from functools import partial
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..dsl.spec import ProviderPolicy, ProviderSpec
from . import scripts
from .base import RELEASED, Denied, Grant, StateStats
from .config import RedisConfig
from .healthcache import Health, HealthCache
from .identity import KeyIds, Names
from .memory import MemoryState
from .multiplex import Multiplexed
from .outbox import Outbox
from .records import RedisRecords
from .redisjobs import RedisJobLeases
from .rediskeys import RedisKeyReport

log = logging.getLogger("pixgate.state")
T = TypeVar("T")
BACKOFF_FIRST, BACKOFF_CAP = 0.1, 5.0
FAILURES = (RedisError, OSError, TimeoutError, ConnectionError)


class RedisState(RedisRecords, RedisJobLeases, RedisKeyReport):
    """The state backend of a fleet; its hooks for counters, job records, job leases and the
    /admin/keys view are its parts (records.py, redisjobs.py, rediskeys.py)."""

    durable_jobs = True  # every replica reads the records: a job outlives its replica

    def __init__(self, config: RedisConfig, local: MemoryState | None = None) -> None:
        self.config = config
        client: aioredis.Redis = aioredis.Redis.from_url(
            config.url,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
            max_connections=256,
            decode_responses=True,
            retry_on_timeout=False,
        )
        super().__init__(
            client,
            Names(config.prefix, KeyIds(config.secret)),
            local or MemoryState(),
            StateStats(backend="redis", extra={"prefix": config.prefix}),
        )
        # The calls of every attempt (the scripts, the batched releases) share one pipelined
        # connection: a pooled call costs several times their CPU (multiplex.py).
        self.line = Multiplexed(client.connection_pool, config.timeout)
        self.cache = HealthCache(client, self.names, config.cache_ttl, config.timeout)
        self.outbox = Outbox(self.line, partial(self.guard, bounded=True), scripts.KEEP_ROWS_MS)
        self._held: dict[str, str] = {}  # token -> its key's lease set, renewed until settled
        self._cursor: dict[str, int] = {}  # round robin of the cached path, per provider
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []

    # --- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        if not await self.ready():
            self._down(None)
        self._background = [asyncio.create_task(self._renew_loop())]
        if self.config.cache_ttl > 0:
            self._background.append(asyncio.create_task(self.cache.listen()))

    async def close(self) -> None:
        """Give back every lease still held (graceful shutdown), then close the pool."""
        if self._tasks:  # settles sent in the background
            await asyncio.wait(list(self._tasks), timeout=self.config.timeout * 4)
        if not self.stats.degraded:
            await self.outbox.flush()
        for task in (*self._background, self._reconnecting):
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
            await self.guard(pipe.execute())
        self._held.clear()
        await self.line.close()
        with contextlib.suppress(*FAILURES):
            await self.client.aclose()

    async def ready(self) -> bool:
        try:
            async with asyncio.timeout(self.config.timeout * 4):
                return bool(await self.client.ping())
        except FAILURES:
            return False

    # --- failing open -------------------------------------------------------------------------

    async def guard(self, call: Awaitable[T], *, bounded: bool = False) -> T | None:
        """The call's result, or None when Redis failed (and local state must serve).
        `bounded`: the call bounds its own wait by the same timeout (those on `self.line`)."""
        try:
            if bounded:
                return await call
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
        self.cache.clear()
        self.line.reset()  # calls still waiting on it fail now, not one timeout each
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
                self.cache.clear()  # what was cached before the outage is not trusted
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
            return self.local.acquire_nowait(provider, policy, pool=pool, exclude=exclude)
        pid = provider.id
        keys = provider.auth.keys if pool else ()
        candidates = tuple(k for k in keys if k not in exclude) if exclude else keys
        if pool and provider.auth.keys and not candidates:
            raise Denied(pid, "no_key")
        # Read (at most once per cache_ttl) even when a lease needs the script: the settle
        # of a success looks at it.
        health = await self.cache.get(provider, self.guard)
        if self.stats.degraded:  # the cache's read just failed
            return self.local.acquire_nowait(provider, policy, pool=pool, exclude=exclude)
        if health is not None and not policy.max_concurrency_per_key:  # no lease to take
            grant = self._cached_grant(pid, policy, health, candidates)
            if grant is not None:
                return grant
        return await self._scripted_grant(provider, policy, candidates, pool, exclude)

    def acquire_nowait(
        self,
        provider: ProviderSpec,
        policy: ProviderPolicy,
        *,
        pool: bool = True,
        exclude: Collection[str] = (),
    ) -> Grant | None:
        """`acquire` when no round trip is needed: local state while degraded, else a grant
        from a fresh cache with no lease to take (None: `acquire` asks Redis)."""
        if self.stats.degraded:
            try:
                grant = self.local.acquire_nowait(provider, policy, pool=pool, exclude=exclude)
            except Denied as exc:
                if exc.why != "busy":  # a busy decline is counted by the `acquire` that follows
                    self.stats.fallbacks += 1
                raise
            self.stats.fallbacks += 1
            return grant
        if policy.max_concurrency_per_key:
            return None
        health = self.cache.fresh(provider.id)
        if health is None:
            return None
        keys = provider.auth.keys if pool else ()
        candidates = tuple(k for k in keys if k not in exclude) if exclude else keys
        if pool and provider.auth.keys and not candidates:
            raise Denied(provider.id, "no_key")
        return self._cached_grant(provider.id, policy, health, candidates)

    def _cached_grant(
        self, pid: str, policy: ProviderPolicy, health: Health, candidates: tuple[str, ...]
    ) -> Grant | None:
        """A grant decided from the cache, or None when only Redis can decide (the breaker
        is not closed, or no key looks healthy)."""
        if health.open_until:
            return None  # open, or half-open with one probe for the whole fleet
        token = f"{self.config.replica}/{secrets.token_hex(6)}"
        if not candidates:
            return Grant(pid, None, token, via="redis")
        now = health.now_ms()
        healthy = [k for k in candidates if health.until.get(k, 0) <= now]
        if not healthy:
            return None
        if policy.key_selection == "least_recently_used":
            key = min(healthy, key=lambda k: self.local.keys.health(pid, k).last_used)
        else:
            turn = self._cursor.get(pid, 0)
            self._cursor[pid] = turn + 1
            key = healthy[turn % len(healthy)]
        self.local.keys.take(pid, key)
        return Grant(pid, key, token, leased=True, via="redis")

    async def _scripted_grant(
        self,
        provider: ProviderSpec,
        policy: ProviderPolicy,
        candidates: tuple[str, ...],
        pool: bool,
        exclude: Collection[str],
    ) -> Grant:
        pid = provider.id
        token = f"{self.config.replica}/{secrets.token_hex(6)}"
        names = list(self.names.attempt(pid, candidates))
        limit = policy.max_concurrency_per_key or 0
        lru = "1" if policy.key_selection == "least_recently_used" else "0"
        ttl_ms = int(self.config.lease_ttl * 1000)
        # A probe's slot lasts one cooldown, renewed or not: a probe that hangs (or whose
        # replica died) does not keep the provider shut (the memory breaker's rule too).
        probe_ms = max(1, int(policy.breaker.cooldown * 1000))
        args: list[str | int] = [
            token, self.config.replica, ttl_ms, probe_ms, limit, lru, len(candidates)
        ]  # fmt: skip
        answer = await self._acquire_call(pid, names, args)
        if answer is None:
            return self.local.acquire_nowait(provider, policy, pool=pool, exclude=exclude)
        verdict, number, probe = str(answer[0]), int(answer[1]), bool(int(answer[2]))
        if verdict == "open":
            raise Denied(pid, "circuit_open", number / 1000 or None)
        if verdict == "nokey":
            raise Denied(pid, "no_key", max(0.0, number / 1000))
        if verdict == "busy":
            raise Denied(pid, "busy")
        key = candidates[number - 1] if number else None
        if key is not None:
            self.local.keys.take(pid, key)  # this replica's own view, for a fall-back
            self._held[token] = names[2 + 2 * number]
        return Grant(pid, key, token, probe=probe, leased=key is not None, via="redis")

    async def _acquire_call(self, pid: str, names: list[str], args: list[str | int]) -> Any:
        """The acquire script; this replica's pending lease releases of the provider go in
        the same call, first (they free slots it may take, and cost no round trip)."""
        for lease, token in self.outbox.take_releases(self.names.of(pid, "lease")):
            names.append(lease)
            args.append(token)
        return await self.guard(self.line.script(self.lua.acquire, names, args), bounded=True)

    async def settle(
        self,
        grant: Grant,
        policy: ProviderPolicy,
        kind: str | None,
        retry_after: float | None = None,
        *,
        wait: bool = True,
    ) -> None:
        """A success or a cancellation that changes nothing the fleet caches costs no round
        trip of its own (batched; with wait=True its lease release is sent before this
        returns). Anything else is one Lua call, sent after the caller moves on with
        wait=False. close() waits for those."""
        leased = grant.token in self._held
        if self.settle_nowait(grant, policy, kind, retry_after):
            if wait and leased:
                await self.outbox.flush()
            return
        self._held.pop(grant.token, None)
        self._settle_local(grant, policy, kind, retry_after)
        call = self._settle_call(grant, policy, kind, retry_after)
        if wait:
            await call
        else:
            task = asyncio.create_task(call)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # On failure the lease expires by its TTL (no renewal) and the probe slot likewise.

    def settle_nowait(
        self, grant: Grant, policy: ProviderPolicy, kind: str | None, retry_after: float | None
    ) -> bool:
        """A local grant, or a success or cancellation that changes nothing the fleet caches
        (batched, as `settle` says); False for anything that needs its Lua call."""
        if grant.via != "redis":
            return self.local.settle_nowait(grant, policy, kind, retry_after)
        if grant.probe or not (kind == RELEASED or (kind is None and self._clean(grant))):
            return False
        lease = self._held.pop(grant.token, None)
        self._settle_local(grant, policy, kind, retry_after)
        if lease is not None:
            self.outbox.release(lease, grant.token)
        if kind is None and grant.key is not None:
            self.outbox.success(self.names.key(grant.provider, grant.key)[0])
        return True

    def _settle_local(
        self, grant: Grant, policy: ProviderPolicy, kind: str | None, retry_after: float | None
    ) -> None:
        """This replica's own view of a redis grant's end."""
        if grant.key is not None:
            self.local.keys.give(grant.provider, grant.key)
        if kind != RELEASED:  # what this replica learnt serves it if Redis goes away
            self.local.record(grant.provider, grant.key, policy, kind, retry_after)

    def _clean(self, grant: Grant) -> bool:
        """Whether a success needs no reset, as far as a fresh cache knows: the breaker
        counts no failures and the key has no cooldown or strikes to clear."""
        health = self.cache.fresh(grant.provider)
        if health is None or health.open_until or health.breaker_row:
            return False
        return grant.key is None or grant.key not in health.dirty

    async def _settle_call(
        self, grant: Grant, policy: ProviderPolicy, kind: str | None, retry_after: float | None
    ) -> None:
        pid = grant.provider
        breaker = self.names.of(pid, "breaker")
        health, lease = self.names.key(pid, grant.key) if grant.key else (breaker, breaker)
        names = [breaker, self.names.of(pid, "probe"), health, lease]
        args = scripts.settle_args(
            grant, self.config.replica, kind, retry_after, policy, self.names.channel
        )
        changed = await self.guard(self.line.script(self.lua.settle, names, args), bounded=True)
        if changed:  # ours at once; other replicas by the message the script published
            self.cache.drop(pid)

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
            await self.guard(self.lua.renew(keys=keys, args=[*tokens, len(held), ttl_ms]))

    def retain(self, providers: dict[str, ProviderSpec]) -> None:
        self.local.retain(providers)
        self.names.forget({(pid, k) for pid, p in providers.items() for k in p.auth.keys})
