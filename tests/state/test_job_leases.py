"""Job leases, the active set and cancel flags (engine/state/redisjobs.py, memory.py): one
holder at a time, taken over only once lapsed, given back only by its holder."""

from __future__ import annotations

import asyncio

import pytest

from engine.state import MemoryState
from engine.state.base import JobStore
from tests.state.conftest import Replica


async def check_leases(a: JobStore, b: JobStore) -> None:
    assert await a.lease_job("j1", "A", 0.3)
    assert not await b.lease_job("j1", "B", 0.3)  # A holds it
    assert await a.lease_job("j1", "A", 0.3)  # renewed by its holder
    await b.release_job("j1", "B")  # not B's to give back
    assert not await b.lease_job("j1", "B", 0.3)
    await asyncio.sleep(0.45)  # A stopped renewing: the lease lapses
    assert await b.lease_job("j1", "B", 5)
    assert not await a.lease_job("j1", "A", 5)
    await b.release_job("j1", "B")
    assert await a.lease_job("j1", "A", 5)

    await a.mark_active("j1", True)
    await a.mark_active("j2", True)
    assert await b.active_jobs() == ["j1", "j2"]
    await b.flag_cancel("j2", 60)
    assert await a.cancel_flags(["j1", "j2"]) == {"j2"}
    await a.mark_active("j2", False)  # a final job: off the set, its flag gone
    assert await b.active_jobs() == ["j1"]
    assert await a.cancel_flags(["j2"]) == set()


async def test_job_leases_in_redis_are_shared_by_the_fleet(replicas: Replica) -> None:
    a, b = replicas("a"), replicas("b")
    assert a.durable_jobs
    await check_leases(a, b)


async def test_job_leases_in_memory_behave_the_same() -> None:
    memory = MemoryState()
    assert not memory.durable_jobs  # a restart loses them: nothing to hand over
    await check_leases(memory, memory)


@pytest.mark.parametrize("ttl", [0.2])
async def test_two_sweepers_racing_for_a_lapsed_lease_have_one_winner(
    replicas: Replica, ttl: float
) -> None:
    a, b, c = replicas("a"), replicas("b"), replicas("c")
    assert await a.lease_job("j", "A", ttl)
    await asyncio.sleep(ttl + 0.1)
    won = await asyncio.gather(*(s.lease_job("j", n, 5) for s, n in ((b, "B"), (c, "C"))))
    assert sorted(won) == [False, True]
