"""The replica's cache of fleet health, against a real redis-server: two RedisState objects
(two clients, each with its own subscription) play two replicas.

The cache may make a replica skip Redis on a healthy attempt, but what one replica learns must
still reach the other at once (by pub/sub), not after the cache's lifetime. To tell the two
apart, these replicas keep entries for 60 s: only a published change can explain a replica
seeing it sooner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis as sync_redis

from engine.dsl.spec import ProviderPolicy
from engine.state import Denied
from engine.state.redisstate import RedisState
from tests.services.redis import RedisServer
from tests.state.conftest import POLICY, Replica, provider

KEYS = ("sk-alpha-0000000001", "sk-bravo-0000000002", "sk-charlie-00000003")
LONG = 60.0


async def started(make: Replica, name: str) -> RedisState:
    state = make(name, cache_ttl=LONG)
    await state.start()
    await until(lambda: _true(state.cache.live), "the change channel was not subscribed")
    return state


async def _true(value: bool) -> bool:
    return value


async def until(check: Callable[[], Awaitable[bool]], why: str, within: float = 5.0) -> None:
    end = time.monotonic() + within
    while not await check():
        assert time.monotonic() < end, why
        await asyncio.sleep(0.01)


def script_calls(server: RedisServer) -> int:
    client = sync_redis.Redis.from_url(server.url)
    stats = client.info("commandstats")
    client.close()
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def test_healthy_attempts_without_a_limit_cost_no_lua_call(
    replicas: Replica, redis: RedisServer
) -> None:
    a = await started(replicas, "a")
    p = provider(*KEYS)
    await a.settle(await a.acquire(p, POLICY), POLICY, None, wait=False)  # reads the cache
    before = script_calls(redis)
    picked = []
    for _ in range(30):
        grant = await a.acquire(p, POLICY)
        picked.append(grant.key)
        await a.settle(grant, POLICY, None, wait=False)
    assert script_calls(redis) == before
    assert set(picked[:3]) == set(KEYS) and picked[:6] == picked[:3] * 2  # each key in turn
    # The successes still reach the fleet's counters (batched, before a report).
    rows = (await a.report({"p": p}))["p"]["keys"]
    assert sum(r["successes"] for r in rows) == 31


async def test_a_cooldown_learnt_by_a_reaches_b_through_its_cache_at_once(
    replicas: Replica,
) -> None:
    a, b = await started(replicas, "a"), await started(replicas, "b")
    p = provider(KEYS[0])
    grant = await b.acquire(p, POLICY)  # B now caches the key as healthy, for 60 s
    await b.settle(grant, POLICY, None, wait=False)
    assert b.cache.fresh("p") is not None
    await a.settle(await a.acquire(p, POLICY), POLICY, "rate_limited", retry_after=30)

    async def b_denies() -> bool:
        try:
            await b.settle(await b.acquire(p, POLICY), POLICY, None, wait=False)
        except Denied as exc:
            return exc.why == "no_key"
        return False

    await until(b_denies, "B kept using a key A had cooled down")


async def test_an_operator_reprobe_reaches_the_other_replicas_cache(replicas: Replica) -> None:
    a, b = await started(replicas, "a"), await started(replicas, "b")
    p = provider(KEYS[0])
    await a.settle(await a.acquire(p, POLICY), POLICY, "bad_key")
    with pytest.raises(Denied):
        await b.acquire(p, POLICY)  # B has read (and caches) the key as disabled
    await a.reprobe("p", KEYS[0])

    async def b_grants() -> bool:
        try:
            grant = await b.acquire(p, POLICY)
        except Denied:
            return False
        await b.settle(grant, POLICY, None)
        return grant.key == KEYS[0]

    await until(b_grants, "B kept the reprobed key disabled")


async def test_failures_counted_on_a_are_reset_by_a_success_on_b(replicas: Replica) -> None:
    """The breaker counts consecutive failures fleet-wide: a success on B between two
    failures on A (failures: 2) must keep the circuit closed, though B's cache was read
    before A's first failure."""
    a, b = await started(replicas, "a"), await started(replicas, "b")
    p = provider()
    await b.settle(await b.acquire(p, POLICY, pool=False), POLICY, None, wait=False)
    await a.settle(await a.acquire(p, POLICY, pool=False), POLICY, "upstream")
    await until(lambda: _true(b.cache.fresh("p") is None), "B's cache was not told")
    await b.settle(await b.acquire(p, POLICY, pool=False), POLICY, None)
    await a.settle(await a.acquire(p, POLICY, pool=False), POLICY, "upstream")
    grant = await b.acquire(p, POLICY, pool=False)  # still closed: not Denied
    assert not grant.probe
    assert (await a.report({"p": p}))["p"]["circuit"] == "closed"


async def test_a_lease_released_in_the_background_frees_the_slot(replicas: Replica) -> None:
    a, b = await started(replicas, "a"), await started(replicas, "b")
    p = provider(KEYS[0])
    policy = ProviderPolicy(max_concurrency_per_key=1)
    grant = await a.acquire(p, policy)
    with pytest.raises(Denied):
        await b.acquire(p, policy)
    await a.settle(grant, policy, None, wait=False)  # batched: sent with A's next call
    again = await a.acquire(p, policy)  # A's own next acquire carries the release
    assert again.key == KEYS[0]
    await a.settle(again, policy, None, wait=False)

    async def b_gets_it() -> bool:
        try:
            held = await b.acquire(p, policy)
        except Denied:
            return False
        await b.settle(held, policy, None)
        return True

    await until(b_gets_it, "A's background release never reached Redis")


async def test_without_its_subscription_a_replica_does_not_use_the_cache(
    replicas: Replica, redis: RedisServer
) -> None:
    a = replicas("a", cache_ttl=LONG)  # never started: it has no subscription
    p = provider(KEYS[0])
    await a.settle(await a.acquire(p, POLICY), POLICY, None)  # loads the scripts
    before = script_calls(redis)
    for _ in range(3):
        await a.settle(await a.acquire(p, POLICY), POLICY, None)
    assert a.cache.fresh("p") is None
    assert script_calls(redis) == before + 6  # one acquire and one settle each, as without it


def test_the_cache_lifetime_is_configured_between_0_and_1_s() -> None:
    from engine.state import StateConfigError, redis_config
    from tests.state.conftest import SECRET

    env = {"PIXGATE_REDIS_URL": "redis://127.0.0.1:1", "PIXGATE_STATE_SECRET": SECRET}
    config = redis_config(env, None)
    assert config is not None and config.cache_ttl == 1.0
    config = redis_config({**env, "PIXGATE_STATE_CACHE_TTL": "0.25"}, None)
    assert config is not None and config.cache_ttl == 0.25
    with pytest.raises(StateConfigError, match="PIXGATE_STATE_CACHE_TTL"):
        redis_config({**env, "PIXGATE_STATE_CACHE_TTL": "5"}, None)


async def test_without_a_wait_only_what_needs_no_round_trip(replicas: Replica) -> None:
    """The hot path's acquire_nowait / settle_nowait: a grant from a fresh cache and a clean
    success are done at once; anything that needs Redis is declined (left to the awaited
    calls), with nothing taken or recorded."""
    a = await started(replicas, "a")
    p = provider(KEYS[0])
    assert a.acquire_nowait(p, POLICY) is None  # nothing cached yet: only Redis can tell
    await a.settle(await a.acquire(p, POLICY), POLICY, None, wait=False)  # reads the cache
    grant = a.acquire_nowait(p, POLICY)
    assert grant is not None and grant.key == KEYS[0] and grant.via == "redis"
    assert a.local.keys.health("p", KEYS[0]).in_flight == 1
    assert a.settle_nowait(grant, POLICY, None, None)  # a clean success: batched
    assert a.local.keys.health("p", KEYS[0]).in_flight == 0
    limited = ProviderPolicy(max_concurrency_per_key=2)
    assert a.acquire_nowait(p, limited) is None  # a lease: the acquire script's
    grant = a.acquire_nowait(p, POLICY)
    assert grant is not None
    assert not a.settle_nowait(grant, POLICY, "upstream", None)  # a failure: its Lua call
    assert a.local.keys.health("p", KEYS[0]).in_flight == 1  # untouched until settled
    await a.settle(grant, POLICY, "rate_limited", 30)
    assert a.local.keys.health("p", KEYS[0]).in_flight == 0
    await until(lambda: _true(a.cache.fresh("p") is None), "the cooldown did not drop the cache")
    with pytest.raises(Denied):
        await a.acquire(p, POLICY)  # the key rests fleet-wide
