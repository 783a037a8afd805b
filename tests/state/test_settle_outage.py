"""A job that ends while Redis is unreachable is settled (usage and budget) once fleet-wide:
its replica does not claim the settlement in its own memory (another replica that ends the
same job would claim it again in Redis), it claims it once Redis answers again."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.jobs.config import JobConfig
from engine.jobs.keeper import Keeper
from engine.jobs.manager import JobManager
from engine.runtime.calls.checkpoint import Journal
from engine.state.redisstate import RedisState
from tests.services.redis import RedisServer
from tests.state.conftest import Replica

WAIT = 10.0


def _manager(state: RedisState, name: str) -> JobManager:
    return JobManager(state, JobConfig(lease_ttl=0.6, holder=name))


async def _end_a_job_while_redis_is_down(
    manager: JobManager, redis: RedisServer, settled: list[str], done: asyncio.Event | None = None
) -> str:
    """Submit a job on `manager`, stop Redis, let the job end (settling as metering does)."""
    go = asyncio.Event()

    async def work(progress: Any, journal: Journal) -> dict[str, Any]:
        await go.wait()

        async def settle() -> None:
            settled.append(manager.config.holder)
            if done is not None:
                done.set()

        await journal.settle(settle)
        return {"data": []}

    job = await manager.submit("owner", "m", work, lambda exc: {"message": "x"}, _nothing)
    redis.stop()
    go.set()
    final = await manager.wait(job["id"], None, WAIT)
    assert final is not None and final["status"] == "succeeded"
    return str(job["id"])


async def test_a_job_settled_by_another_replica_meanwhile_is_not_settled_again(
    redis: RedisServer, replicas: Replica
) -> None:
    a, b = replicas("a"), replicas("b")
    manager = _manager(a, "a")
    settled: list[str] = []
    job_id = await _end_a_job_while_redis_is_down(manager, redis, settled)
    assert settled == []  # not in this replica's memory: it cannot know it is the first
    await manager.settle_pending()
    assert settled == []  # still unreachable: it waits
    redis.start()
    # The replica that took the job over (its lease lapsed) ends it and settles it first.
    assert await b.claim_first(f"{job_id}:settled", {"object": "image.job.settlement"}, 60)
    await manager.settle_pending()
    assert settled == []  # settled once, by the other replica
    await manager.close()


async def test_a_job_ended_in_an_outage_is_settled_once_redis_answers(
    redis: RedisServer, replicas: Replica
) -> None:
    a, b = replicas("a"), replicas("b")
    manager = _manager(a, "a")
    settled: list[str] = []
    done = asyncio.Event()
    job_id = await _end_a_job_while_redis_is_down(manager, redis, settled, done)
    keeper = Keeper(manager)  # claims again at every lease renewal
    keeper.start()
    try:
        redis.start()
        async with asyncio.timeout(WAIT):
            await done.wait()
        assert settled == ["a"]
        # the claim is in Redis now: a replica that ends the job later does not settle it
        mark = {"object": "image.job.settlement"}
        assert await b.claim_first(f"{job_id}:settled", mark, 60) is False
        await manager.settle_pending()
        assert settled == ["a"]
    finally:
        await keeper.close()
        await manager.close()


async def test_an_idempotency_key_still_fails_open_onto_memory(
    redis: RedisServer, replicas: Replica
) -> None:
    a = replicas("a")
    redis.stop()
    assert await a.claim_first("idem_1", {"by": "a"}, 60) is None  # nobody can tell now
    assert await a.claim_job("idem_1", {"by": "a"}, 60) is None  # this replica's memory
    assert await a.claim_job("idem_1", {"by": "again"}, 60) == {"by": "a"}


async def _nothing() -> None:
    return None
