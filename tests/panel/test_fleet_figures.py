"""The overview's fleet arithmetic and its Redis board, in process (the fleet of real
`pixgate serve` processes is tests/fleet/test_overview_fleet.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from engine.panel import figures
from engine.panel.fleet import Fleet, figures_of
from engine.panel.recent import RecentStats
from engine.state.base import StateStats
from engine.state.board import FleetBoard
from engine.state.config import RedisConfig
from tests.services.redis import RedisServer, redis_server

NOW = 1_800_000_000.0


def stats_of(requests: int, seconds: float, failed: int = 0) -> RecentStats:
    recent = RecentStats(clock=lambda: NOW)
    for i in range(requests):
        recent.record("r", "p", 500 if i < failed else 200, seconds, seconds / 10)
    return recent


def published(recent: RecentStats) -> list[figures.Bucket]:
    """What another replica reads of `recent`: its rows as shared, parsed back."""
    minutes, _ = recent.take_changes()
    out: list[figures.Bucket] = []
    for minute, rows in minutes.items():
        parsed = [figures.Series.from_json(row) for row in rows]
        out.append((minute, dict(p for p in parsed if p is not None)))
    return out


def test_percentiles_weigh_each_replica_by_its_requests() -> None:
    busy = stats_of(1000, 0.1)  # 256 kept, 32 shared: each stands for many requests
    quiet = stats_of(10, 1.0, failed=5)
    merged = published(busy) + published(quiet)
    (row,) = figures.window(merged, int(NOW // 60), 5)
    assert row["requests"] == 1010 and row["success_rate"] == round(1005 / 1010, 4)
    # 10 slow requests out of 1010 are under 1 %: a plain list of the shared samples (32 fast,
    # 10 slow) would put p99 at 1.0 s.
    assert row["p50_s"] == 0.1 and row["p99_s"] == 0.1
    assert row["overhead_p99_ms"] == 10.0
    (quiet_row,) = figures.window(published(stats_of(10, 1.0)), int(NOW // 60), 5)
    assert quiet_row["p99_s"] == 1.0
    timeline = figures.timeline(merged, int(NOW // 60))
    assert timeline[-1]["requests"] == 1010 and timeline[-1]["errors"] == 5


def test_changes_not_shared_are_given_back_and_shared_once() -> None:
    recent = stats_of(3, 0.2, failed=1)
    minutes, errors = recent.take_changes()
    assert list(minutes) == [int(NOW // 60)] and len(errors) == 1
    assert recent.take_changes() == ({}, [])  # nothing new
    recent.give_back(list(minutes), errors)  # Redis was away
    again, errors_again = recent.take_changes()
    assert again == minutes and errors_again == errors
    everything, all_errors = recent.take_changes(everything=True)  # Redis restarted empty
    assert everything == minutes and all_errors == errors


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
async def client(redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    conn = aioredis.Redis.from_url(redis.url, decode_responses=True)
    try:
        yield conn
    finally:
        await conn.aclose()


def fleet(client: aioredis.Redis, replica: str, recent: RecentStats) -> Fleet:
    config = RedisConfig(url="", secret="s" * 16, prefix="t", replica=replica)
    return Fleet(recent, FleetBoard(client, config, StateStats(backend="redis")))


async def test_two_replicas_see_each_other_and_damaged_values_are_skipped(
    client: aioredis.Redis,
) -> None:
    a = fleet(client, "A", stats_of(4, 0.3, failed=1))
    b = fleet(client, "B", stats_of(2, 0.1))
    b.info["pid"] = -1  # two names in one test process
    assert await a.share("v1") and await b.share("v1")
    ttls = [await client.pttl(name) for name in await client.keys("t:*")]
    assert len(ttls) == 4 and all(0 < ttl <= 65 * 60 * 1000 for ttl in ttls)  # all expire
    await client.hset("t:{fleet}:stats:B/-1", "m:oops", "{not json")
    await client.hset("t:{fleet}:stats:B/-1", "m:12", '[{"r": 1}]')
    await client.lpush("t:{fleet}:errors:B/-1", "[]", "nonsense")
    seen = await figures_of(b, "v1")
    assert seen["scope"] == "fleet" and seen["notice"] is None
    assert sum(r["requests"] for r in seen["last_5m"]) == 6
    assert {r["replica"]: r["requests_60m"] for r in seen["replicas"]} == {"A": 4, "B": 2}
    assert [(e["replica"], e["status"]) for e in seen["errors"]] == [("A", 500)]


async def test_unreachable_redis_shows_local_figures_with_a_notice(
    client: aioredis.Redis, redis: RedisServer
) -> None:
    a = fleet(client, "A", stats_of(4, 0.3))
    redis.stop()
    assert not await a.share("v1")  # kept for later
    seen = await figures_of(a, "v1")
    assert seen["scope"] == "replica" and "Redis" in seen["notice"]
    assert sum(r["requests"] for r in seen["last_5m"]) == 4
    redis.start()
    assert await a.share("v1")
    other = fleet(client, "B", RecentStats(clock=lambda: NOW))
    other.info["pid"] = -1
    seen = await figures_of(other, "v1")
    assert seen["scope"] == "fleet" and sum(r["requests"] for r in seen["last_5m"]) == 4
