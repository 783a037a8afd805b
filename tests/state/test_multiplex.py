"""The one pipelined connection that carries every attempt's Redis calls (multiplex.py), and
the batched writes that go through it (outbox.py), against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError

from engine.state import Denied
from engine.state.multiplex import Multiplexed
from tests.services.redis import RedisServer
from tests.state.conftest import POLICY, Replica, provider

KEYS = ("sk-alpha-0000000001", "sk-bravo-0000000002")
LIMITED = replace(POLICY, max_concurrency_per_key=1)


async def test_concurrent_calls_each_get_their_own_answer(redis: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis.unix_url, decode_responses=True)
    line = Multiplexed(client.connection_pool)
    try:
        answers = await asyncio.gather(*(line.call("ECHO", str(i)) for i in range(300)))
        assert answers == [str(i) for i in range(300)]
        batch = await line.batch([("SET", "n", 5), ("INCRBY", "n", 2), ("GET", "n")])
        assert batch == ["OK", 7, "7"]
        # An error answer fails its call only; the connection stays in step.
        with pytest.raises(ResponseError):
            await line.call("INCR", "not-a-command-arg", "extra")
        assert await line.call("ECHO", "after") == "after"
    finally:
        await line.close()
        await client.aclose()


async def test_a_lost_connection_fails_its_waiting_calls_and_the_next_call_reconnects(
    redis: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    line = Multiplexed(client.connection_pool)
    try:
        assert await line.call("PING") in (True, "PONG")
        waiting = asyncio.ensure_future(line.call("BLPOP", "never", 0))
        await asyncio.sleep(0.05)
        redis.stop()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(waiting, 5)
        redis.start()
        assert await asyncio.wait_for(line.call("ECHO", "back"), 5) == "back"
    finally:
        await line.close()
        await client.aclose()


async def test_a_call_without_an_answer_in_time_fails_all_waiting_and_the_next_reconnects(
    redis: RedisServer,
) -> None:
    """One timer bounds every call on the line: when the oldest waits past the timeout, the
    connection is stuck (answers come in order), so every call waiting on it fails."""
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    line = Multiplexed(client.connection_pool, timeout=0.2)
    try:
        assert await line.call("ECHO", "first") == "first"
        stuck = asyncio.ensure_future(line.call("BLPOP", "never", 0))
        behind = asyncio.ensure_future(line.call("ECHO", "behind"))
        for waiting in (stuck, behind):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(waiting, 5)
        assert await asyncio.wait_for(line.call("ECHO", "again"), 5) == "again"
    finally:
        await line.close()
        await client.aclose()


async def test_the_acquire_script_is_loaded_again_after_redis_lost_it(
    replicas: Replica, redis: RedisServer
) -> None:
    a = replicas("a")
    p = provider(*KEYS)
    await a.settle(await a.acquire(p, LIMITED), LIMITED, None)
    sync_redis.Redis.from_url(redis.url).script_flush()
    grant = await a.acquire(p, LIMITED)
    assert grant.via == "redis" and not a.stats.degraded
    await a.settle(grant, LIMITED, None)


async def test_leases_are_fleet_wide_again_after_redis_comes_back(
    replicas: Replica, redis: RedisServer
) -> None:
    a, b = replicas("a", timeout=0.2), replicas("b", timeout=0.2)
    await a.start()
    p = provider(KEYS[0])
    held = await a.acquire(p, LIMITED)
    redis.stop()
    assert (await a.acquire(p, POLICY)).via == "memory"  # fails open
    redis.start()
    end = time.monotonic() + 10
    while a.stats.degraded:
        assert time.monotonic() < end, "did not reconnect"
        await asyncio.sleep(0.05)
    await a.settle(held, LIMITED, None)  # its lease may be gone with Redis's memory
    mine = await a.acquire(p, LIMITED)
    assert mine.via == "redis"
    with pytest.raises(Denied) as caught:  # the one slot is a's, across the fleet
        await b.acquire(p, LIMITED)
    assert caught.value.why == "busy"
    await a.settle(mine, LIMITED, None)
    assert (await b.acquire(p, LIMITED)).via == "redis"


async def test_success_counters_reach_the_fleet_without_a_report(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    await a.start()
    end = time.monotonic() + 5
    while not a.cache.live:  # with the cache, a clean success is counted in the outbox
        assert time.monotonic() < end, "the change channel was not subscribed"
        await asyncio.sleep(0.01)
    a.outbox.counter_delay = 0.05
    p = provider(*KEYS)
    for _ in range(3):
        await a.settle(await a.acquire(p, POLICY), POLICY, None, wait=False)
    assert a.outbox._successes  # batched, not sent with the settle
    end = time.monotonic() + 5
    while sum(r["successes"] for r in (await b.report({"p": p}))["p"]["keys"]) < 3:
        assert time.monotonic() < end, "a's counts never left a"
        await asyncio.sleep(0.02)


async def test_a_release_goes_out_at_once_and_success_counts_only_when_due(
    replicas: Replica, redis: RedisServer
) -> None:
    """Releases free fleet-wide slots, so they leave on the next turn of the loop; success
    counts are statistics, sent once per counter_delay rather than with every release."""
    a = replicas("a")
    await a.start()
    end = time.monotonic() + 5
    while not a.cache.live:  # with the cache, a clean success is counted in the outbox
        assert time.monotonic() < end, "the change channel was not subscribed"
        await asyncio.sleep(0.01)
    a.outbox.counter_delay = 3600  # not due during the test
    p = provider(KEYS[0])
    for _ in range(3):
        await a.settle(await a.acquire(p, LIMITED), LIMITED, None, wait=False)
    leases = a.names.of("p", "lease")
    direct = sync_redis.Redis.from_url(redis.url)
    end = time.monotonic() + 5
    while any(direct.zcard(k) for k in direct.scan_iter(f"{leases}*")):
        assert time.monotonic() < end, "the release never left a"
        await asyncio.sleep(0.01)
    assert sum(a.outbox._successes.values()) == 3  # still here: not sent with the release
    report = await a.report({"p": p})  # a report sends them first
    assert report["p"]["keys"][0]["successes"] == 3
