"""Shared state through a real redis-server: two RedisState objects play two replicas."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis as sync_redis

from engine.dsl.spec import ProviderPolicy
from engine.state import RELEASED, Denied
from tests.services.redis import RedisServer
from tests.state.conftest import POLICY, SECRET, Replica, provider

KEYS = ("sk-alpha-0000000001", "sk-bravo-0000000002", "sk-charlie-00000003")


async def test_round_robin_cursor_is_shared_by_the_fleet(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    p = provider(*KEYS)
    picked = []
    for state in (a, b, a, b, a, b):
        grant = await state.acquire(p, POLICY)
        picked.append(grant.key)
        await state.settle(grant, POLICY, None)
    assert picked == [*KEYS, *KEYS]


async def test_a_rate_limit_learnt_by_one_replica_cools_the_key_for_all(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    p = provider(KEYS[0])
    grant = await a.acquire(p, POLICY)
    await a.settle(grant, POLICY, "rate_limited", retry_after=30)
    with pytest.raises(Denied) as caught:
        await b.acquire(p, POLICY)
    assert caught.value.why == "no_key"
    assert caught.value.retry_after is not None and 29 < caught.value.retry_after <= 30
    report = await b.report({"p": p})
    row = report["p"]["keys"][0]
    assert row["state"] == "cooling_down" and row["changed_by"] == "a"
    assert row["key"] != KEYS[0] and "alpha" not in row["key"]  # masked


async def test_a_bad_key_is_skipped_by_other_replicas_until_reprobe(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    p = provider(*KEYS[:2])
    grant = await a.acquire(p, POLICY)
    assert grant.key == KEYS[0]
    await a.settle(grant, POLICY, "bad_key")
    for _ in range(4):
        other = await b.acquire(p, POLICY)
        assert other.key == KEYS[1]
        await b.settle(other, POLICY, None)
    report = await a.report({"p": p})
    assert [r["state"] for r in report["p"]["keys"]] == ["disabled", "healthy"]
    assert report["p"]["keys"][1]["successes"] == 4


async def test_per_key_concurrency_is_a_fleet_wide_hard_limit(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    p = provider(KEYS[0])
    policy = ProviderPolicy(max_concurrency_per_key=2)
    held = [await a.acquire(p, policy), await b.acquire(p, policy)]
    for state in (a, b):
        with pytest.raises(Denied) as caught:
            await state.acquire(p, policy)
        assert caught.value.why == "busy"
    assert (await a.report({"p": p}))["p"]["keys"][0]["in_flight"] == 2
    await b.settle(held[1], policy, RELEASED)
    again = await a.acquire(p, policy)
    assert again.key == KEYS[0]


async def test_an_open_breaker_is_open_everywhere_and_lets_exactly_one_probe(
    replicas: Replica,
) -> None:
    a, b, c = replicas("a"), replicas("b"), replicas("c")
    p = provider()  # a provider without keys still has a breaker
    for _ in range(2):
        grant = await a.acquire(p, POLICY, pool=False)
        await a.settle(grant, POLICY, "upstream")
    for state in (a, b, c):
        with pytest.raises(Denied) as caught:
            await state.acquire(p, POLICY, pool=False)
        assert caught.value.why == "circuit_open"
    assert (await b.report({"p": p}))["p"]["circuit"] == "open"
    await asyncio.sleep(1.05)  # the 1 s cooldown
    outcomes = await asyncio.gather(
        *(s.acquire(p, POLICY, pool=False) for s in (a, b, c, a, b, c)), return_exceptions=True
    )
    probes = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(probes) == 1 and probes[0].probe
    assert all(isinstance(o, Denied) for o in outcomes if o is not probes[0])
    owner = {id(s): s for s in (a, b, c)}
    await next(iter(owner.values())).settle(probes[0], POLICY, None)
    assert (await c.report({"p": p}))["p"]["circuit"] == "closed"
    assert not (await c.acquire(p, POLICY, pool=False)).probe


async def test_a_cancelled_probe_gives_the_probe_slot_back(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    p = provider()
    for _ in range(2):
        await a.settle(await a.acquire(p, POLICY, pool=False), POLICY, "timeout")
    await asyncio.sleep(1.05)
    probe = await a.acquire(p, POLICY, pool=False)
    assert probe.probe
    with pytest.raises(Denied):
        await b.acquire(p, POLICY, pool=False)
    await a.settle(probe, POLICY, RELEASED)  # cancelled: no verdict
    assert (await b.acquire(p, POLICY, pool=False)).probe


async def test_a_failed_probe_opens_the_circuit_again(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    p = provider()
    for _ in range(2):
        await a.settle(await a.acquire(p, POLICY, pool=False), POLICY, "upstream")
    await asyncio.sleep(1.05)
    probe = await b.acquire(p, POLICY, pool=False)
    await b.settle(probe, POLICY, "upstream")
    with pytest.raises(Denied):
        await a.acquire(p, POLICY, pool=False)


async def test_leases_of_a_dead_replica_expire_and_live_ones_are_renewed(
    replicas: Replica,
) -> None:
    policy = ProviderPolicy(max_concurrency_per_key=1)
    p = provider(KEYS[0])
    dead, alive, other = (
        replicas("dead", lease_ttl=0.4),
        replicas("alive", lease_ttl=0.4),
        (replicas("other", lease_ttl=0.4)),
    )
    await alive.start()  # its heartbeat renews; `dead` never started one: it died
    held = await dead.acquire(p, policy)
    assert held.key == KEYS[0]
    with pytest.raises(Denied):
        await other.acquire(p, policy)
    await asyncio.sleep(0.6)
    mine = await alive.acquire(p, policy)  # the dead replica's lease expired
    await asyncio.sleep(0.9)  # over two TTLs: renewed by the heartbeat
    with pytest.raises(Denied) as caught:
        await other.acquire(p, policy)
    assert caught.value.why == "busy"
    await alive.close()  # graceful shutdown gives leases back
    assert (await other.acquire(p, policy)).key == KEYS[0]
    assert mine.key == KEYS[0]


async def test_redis_down_fails_open_with_one_warning_then_converges(
    replicas: Replica, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = replicas("a", timeout=0.2), replicas("b", timeout=0.2)
    await a.start()
    await b.start()
    p = provider(*KEYS[:2])
    caplog.set_level(logging.WARNING, logger="pixgate.state")
    redis.stop()
    for _ in range(5):  # served on local state, no exception
        grant = await a.acquire(p, POLICY)
        assert grant.key in KEYS and grant.via == "memory"
        await a.settle(grant, POLICY, None)
    assert a.stats.degraded and a.stats.outages == 1 and a.stats.fallbacks >= 5
    assert (await a.report({"p": p}))["p"]["source"].startswith("local")
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1  # one warning, not one per request
    redis.start()
    end = time.monotonic() + 10
    while a.stats.degraded or not await a.ready():
        assert time.monotonic() < end, "did not reconnect"
        await asyncio.sleep(0.05)
    # Back: a verdict on A reaches B again.
    grant = await a.acquire(p, POLICY)
    assert grant.via == "redis"
    await a.settle(grant, POLICY, "bad_key")
    await b.acquire(p, POLICY)  # b notices Redis is back (or was never told it left)
    end = time.monotonic() + 10
    while b.stats.degraded:
        assert time.monotonic() < end
        await asyncio.sleep(0.05)
    for _ in range(3):
        other = await b.acquire(p, POLICY)
        assert other.key != grant.key
        await b.settle(other, POLICY, None)


async def test_while_degraded_each_local_decision_counts_one_fallback(
    replicas: Replica, redis: RedisServer
) -> None:
    """The hot path's acquire_nowait declining a busy key must not count a fallback: the
    `acquire` its caller makes next counts that decision (it counted it twice once)."""
    a = replicas("a", timeout=0.2)
    await a.start()
    p = provider(KEYS[0])
    limited = ProviderPolicy(max_concurrency_per_key=1)
    redis.stop()
    held = await a.acquire(p, limited)  # finds Redis gone: served locally
    assert a.stats.degraded and held.via == "memory"
    before = a.stats.fallbacks
    with pytest.raises(Denied) as busy:
        a.acquire_nowait(p, limited)
    assert busy.value.why == "busy" and a.stats.fallbacks == before
    with pytest.raises(Denied):
        await a.acquire(p, limited)
    assert a.stats.fallbacks == before + 1
    await a.settle(held, limited, None)
    grant = a.acquire_nowait(p, limited)
    assert grant is not None and a.stats.fallbacks == before + 2


async def test_provider_keys_never_reach_redis_in_clear(
    replicas: Replica, redis: RedisServer
) -> None:
    a = replicas("a")
    p = provider(*KEYS)
    for kind in ("rate_limited", "bad_key", None):
        grant = await a.acquire(p, POLICY)
        await a.settle(grant, POLICY, kind)
    client = sync_redis.Redis.from_url(redis.url)
    dump = []
    for name in client.scan_iter("*"):
        dump.append(name)
        kind = client.type(name)
        if kind == b"hash":
            dump.extend(b"%s=%s" % kv for kv in client.hgetall(name).items())
        elif kind == b"zset":
            dump.extend(m for m, _ in client.zrange(name, 0, -1, withscores=True))
        elif kind == b"string":
            dump.append(client.get(name) or b"")
    client.close()
    blob = b"\n".join(dump)
    assert dump and all(key.encode() not in blob for key in KEYS)
    assert all(name.startswith(b"t:") for name in client.scan_iter("*"))


async def test_prefixes_keep_two_gateways_apart(replicas: Replica) -> None:
    one, two = replicas("a", prefix="one"), replicas("b", prefix="two")
    p = provider(KEYS[0])
    await one.settle(await one.acquire(p, POLICY), POLICY, "bad_key")
    assert (await two.acquire(p, POLICY)).key == KEYS[0]


async def test_a_unix_socket_url_works(replicas: Replica, redis: RedisServer) -> None:
    a = replicas("a", url=redis.unix_url)
    assert await a.ready()
    grant = await a.acquire(provider(KEYS[0]), POLICY)
    assert grant.via == "redis"


async def test_hooks_counters_usage_and_jobs_are_shared(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    assert await a.hit("client:x", 60) == 1
    assert await b.hit("client:x", 60, 2) == 3
    assert await a.add_usage("client:x", {"images": 2, "usd": 0.04}) == {"images": 2, "usd": 0.04}
    totals = await b.add_usage("client:x", {"images": 1, "usd": 0.02})
    assert totals["images"] == 3 and totals["usd"] == pytest.approx(0.06)
    await a.put_job("job_1", {"status": "running", "provider": "p"}, ttl=60)
    assert await b.get_job("job_1") == {"status": "running", "provider": "p"}
    assert await b.get_job("job_unknown") is None


def test_secret_is_required_and_urls_are_checked() -> None:
    from engine.dsl.spec import StateSpec
    from engine.state import StateConfigError, redis_config

    assert redis_config({}, None) is None
    with pytest.raises(StateConfigError, match="PIXGATE_STATE_SECRET"):
        redis_config({"PIXGATE_REDIS_URL": "redis://127.0.0.1:1"}, None)
    with pytest.raises(StateConfigError, match="redis://"):
        redis_config({"PIXGATE_REDIS_URL": "http://x", "PIXGATE_STATE_SECRET": SECRET}, None)
    spec = StateSpec(redis_url="redis://from-file:6379", prefix="file", timeout=0.1)
    env = {"PIXGATE_STATE_SECRET": SECRET, "PIXGATE_REDIS_PREFIX": "env"}
    config = redis_config(env, spec)
    assert config is not None and config.url == "redis://from-file:6379"
    assert config.prefix == "env" and config.timeout == 0.1


async def test_an_operator_reprobe_on_one_replica_frees_the_key_for_all(
    replicas: Replica,
) -> None:
    a, b = replicas("a"), replicas("b")
    p = provider(KEYS[0])
    await a.settle(await a.acquire(p, POLICY), POLICY, "bad_key")
    with pytest.raises(Denied):
        await b.acquire(p, POLICY)
    await a.reprobe("p", KEYS[0])
    grant = await b.acquire(p, POLICY)  # the other replica may use it again at once
    assert grant.key == KEYS[0]
    await b.settle(grant, POLICY, None)
    row = (await b.report({"p": p}))["p"]["keys"][0]
    assert row["state"] == "healthy"
