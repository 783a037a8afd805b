"""Job leases, the set of active jobs and cancel flags in Redis (a part of RedisState; job
records themselves are in records.py).

Every call is one round trip, guarded like the rest: when Redis fails, this replica's memory
state answers instead.
"""

from __future__ import annotations

from .redispart import RedisPart


class RedisJobLeases(RedisPart):
    async def lease_job(self, job_id: str, holder: str, ttl: float) -> bool:
        key = self.names.plain("joblease", job_id)
        taken = await self.guard(self.lua.job_lease(keys=[key], args=[holder, int(ttl * 1000)]))
        if taken is None:
            return await self.local.lease_job(job_id, holder, ttl)
        return bool(taken)

    async def release_job(self, job_id: str, holder: str) -> None:
        key = self.names.plain("joblease", job_id)
        if await self.guard(self.lua.job_release(keys=[key], args=[holder])) is None:
            await self.local.release_job(job_id, holder)

    async def mark_active(self, job_id: str, active: bool) -> None:
        key = self.names.plain("jobsactive")
        pipe = self.client.pipeline(transaction=False)
        if active:
            pipe.sadd(key, job_id)
        else:
            pipe.srem(key, job_id)
            pipe.delete(self.names.plain("jobcancel", job_id))
        if await self.guard(pipe.execute()) is None:
            await self.local.mark_active(job_id, active)

    async def active_jobs(self) -> list[str]:
        if self.degraded():
            return await self.local.active_jobs()
        found = await self.guard(self.client.smembers(self.names.plain("jobsactive")))
        if found is None:
            return await self.local.active_jobs()
        return sorted(str(j) for j in found)

    async def flag_cancel(self, job_id: str, ttl: float) -> None:
        key = self.names.plain("jobcancel", job_id)
        if await self.guard(self.client.set(key, "1", px=int(ttl * 1000))) is None:
            await self.local.flag_cancel(job_id, ttl)

    async def cancel_flags(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        local = await self.local.cancel_flags(job_ids)
        if self.degraded():
            return local
        keys = [self.names.plain("jobcancel", j) for j in job_ids]
        found = await self.guard(self.client.mget(keys))
        if found is None:
            return local
        return local | {j for j, flag in zip(job_ids, found, strict=True) if flag}
