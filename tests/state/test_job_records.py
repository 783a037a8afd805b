"""The job-record hooks (claim, index, list) behave alike on memory and on a real Redis."""

from __future__ import annotations

import asyncio
import time

from engine.state import MemoryState
from engine.state.base import Jobs
from tests.state.conftest import Replica


async def _claim_once(one: Jobs, other: Jobs) -> None:
    first, second = await asyncio.gather(
        one.claim_job("idem_1", {"by": "one"}, 60), other.claim_job("idem_1", {"by": "two"}, 60)
    )
    # exactly one wins; the loser gets the winner's record
    assert [first, second].count(None) == 1
    winner = {"by": "one"} if first is None else {"by": "two"}
    assert (second if first is None else first) == winner
    assert await other.get_job("idem_1") == winner


async def _index_newest_first(one: Jobs, other: Jobs) -> None:
    now = time.time()
    for i in range(3):
        await one.index_job("owner-a", f"job_{i}", now + i, 60)
    await one.index_job("owner-b", "job_b", now + 5, 60)
    assert [j for j, _ in await other.job_ids("owner-a", None, 2)] == ["job_2", "job_1"]
    assert [j for j, _ in await other.job_ids("owner-a", now + 1, 10)] == ["job_0"]
    assert await other.job_ids("nobody", None, 10) == []


async def test_memory_job_hooks() -> None:
    state = MemoryState()
    await _claim_once(state, state)
    await _index_newest_first(state, state)


async def test_redis_job_hooks_are_shared(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    await _claim_once(a, b)
    await _index_newest_first(a, b)
    await a.put_job("short", {"x": 1}, 0.05)  # the TTL is Redis's own
    await asyncio.sleep(0.2)
    assert await b.get_job("short") is None
