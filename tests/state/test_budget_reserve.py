"""Budget reservations: all or nothing in every window, and racing requests never both take
the last dollars, in memory and through a real redis-server shared by two replicas."""

from __future__ import annotations

import asyncio

from engine.clients.spec import Budget
from engine.state import MemoryState
from engine.usage.budget import Budgets, OverBudget
from tests.services.redis import RedisServer
from tests.state.conftest import Replica

NAMES = ("budget:{c}:day:d", "budget:{c}:month:m")


async def race(budgets: list[Budgets], tries: int) -> int:
    """`tries` requests of $0.30 against a $1.00 day spread over the budgets objects."""
    budget = Budget(usd_per_day=1.0, usd_per_month=50.0)

    async def one(i: int) -> bool:
        try:
            await budgets[i % len(budgets)].reserve("c", budget, 0.3, "1 image")
        except OverBudget:
            return False
        return True

    return sum(await asyncio.gather(*(one(i) for i in range(tries))))


async def test_memory_reserve_is_all_or_nothing() -> None:
    state = MemoryState()
    ok, before = await state.reserve(NAMES, "f", 5, [10, 6], 60)
    assert ok and before == [0, 0]
    ok, before = await state.reserve(NAMES, "f", 2, [10, 6], 60)  # the month would be 7 > 6
    assert not ok and before == [5, 5]
    assert await state.get_usage(NAMES[0]) == {"f": 5}  # the day was not charged either


async def test_racing_requests_share_the_last_dollars_in_memory() -> None:
    assert await race([Budgets(MemoryState())], 20) == 3  # 3 x 0.30 fits in 1.00, 4 does not


async def test_racing_requests_across_two_replicas_through_redis(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    assert await race([Budgets(a), Budgets(b)], 20) == 3
    ok, before = await b.reserve(NAMES, "f", 5, [10, 6], 60)
    assert ok and before == [0, 0]
    ok, before = await a.reserve(NAMES, "f", 2, [10, 6], 60)
    assert not ok and before == [5, 5]
    assert await a.get_usage(NAMES[1]) == {"f": 5}
    spent = await Budgets(a).spent("c", Budget(usd_per_day=1.0))
    assert spent["day"] == 0.9


async def test_counts_made_while_redis_is_down_reach_it_once_it_is_back(
    replicas: Replica, redis: RedisServer
) -> None:
    a, b = replicas("a"), replicas("b")
    redis.stop()
    await a.add_usage("day:x", {"f": 2}, 60)  # served by a's memory
    ok, _ = await a.reserve(NAMES, "spent", 5, [10, 10], 60)
    assert ok and await a.get_usage("day:x") == {"f": 2}
    redis.start()  # empty again (nothing persists)
    for _ in range(100):
        if await a.ready():
            break
        await asyncio.sleep(0.05)
    await a.add_usage("day:x", {"f": 4}, 60)  # answered by Redis: the outage's counts follow
    assert await b.get_usage("day:x") == {"f": 6}
    assert await b.get_usage(NAMES[0]) == {"spent": 5}
    assert await b.get_usage(NAMES[1]) == {"spent": 5}
