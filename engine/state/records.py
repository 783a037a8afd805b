"""The hooks a fleet shares beyond key health: rate-limit counters, usage totals and budget
reservations, job records (a part of RedisState).

Each call is one Redis round trip (a Lua script or a pipeline), guarded like the rest: when
Redis fails, this replica's memory state answers instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from .base import StateStats
from .identity import Names
from .memory import MemoryState
from .multiplex import Command, Multiplexed
from .redispart import RedisPart


class RedisRecords(RedisPart):
    line: Multiplexed  # RedisState's shared connection

    def __init__(
        self, client: aioredis.Redis, names: Names, local: MemoryState, stats: StateStats
    ) -> None:
        super().__init__(client, names, local, stats)
        # Usage and spend counted locally while Redis failed: added to Redis once it answers
        # again, so an outage's requests are not missing from the fleet's totals.
        self._unsent: dict[str, tuple[dict[str, float], float | None]] = {}

    async def hit(self, name: str, window: float, amount: int = 1) -> int:
        index = int(time.time() // window)
        key = self.names.plain("hits", name, str(index))
        count = await self.guard(self.lua.hit(keys=[key], args=[amount, int(window * 2000)]))
        if count is None:
            return await self.local.hit(name, window, amount)
        return int(count)

    async def add_usage(
        self, name: str, amounts: dict[str, float], ttl: float | None = None
    ) -> dict[str, float]:
        # MULTI..EXEC, all of one request or none, in one write on the shared connection
        # (multiplex.py), so no other call's command can come between: a pooled transaction
        # per request cost several times the CPU (usage is sent at every request when idle).
        key = self.names.plain("usage", name)
        commands: list[Command] = [("MULTI",)]
        commands += [("HINCRBYFLOAT", key, field, repr(float(n))) for field, n in amounts.items()]
        if ttl is not None:
            commands.append(("PEXPIRE", key, int(ttl * 1000)))
        commands.append(("EXEC",))
        answers = await self.guard(self.line.batch(commands), bounded=True)
        if answers is None:
            self._keep(name, amounts, ttl)
            return await self.local.add_usage(name, amounts, ttl)
        if self._unsent:
            await self._replay()
        return {f: float(v) for f, v in zip(amounts, answers[-1], strict=False)}

    async def get_usage(self, name: str) -> dict[str, float]:
        found = await self.guard(self.client.hgetall(self.names.plain("usage", name)))
        if found is None:
            return await self.local.get_usage(name)
        return {str(f): float(v) for f, v in found.items()}

    async def reserve(
        self, names: Sequence[str], field: str, amount: float, limits: Sequence[float], ttl: float
    ) -> tuple[bool, list[float]]:
        keys = [self.names.plain("usage", n) for n in names]
        args: list[str | int] = [field, repr(amount), int(ttl * 1000)]
        args += [repr(float(x)) for x in limits]
        out = await self.guard(self.lua.reserve(keys=keys, args=args))
        if out is None:
            done, before = await self.local.reserve(names, field, amount, limits, ttl)
            for name in names if done else ():
                self._keep(name, {field: amount}, ttl)
            return done, before
        if self._unsent:
            await self._replay()
        return bool(int(out[0])), [float(v) for v in out[1:]]

    def _add(self, pipe: Any, name: str, amounts: dict[str, float], ttl: float | None) -> None:
        key = self.names.plain("usage", name)
        for field, amount in amounts.items():
            pipe.hincrbyfloat(key, field, amount)
        if ttl is not None:
            pipe.pexpire(key, int(ttl * 1000))

    def _keep(self, name: str, amounts: dict[str, float], ttl: float | None) -> None:
        fields = self._unsent.setdefault(name, ({}, ttl))[0]
        for field, amount in amounts.items():
            fields[field] = fields.get(field, 0.0) + amount

    async def _replay(self) -> None:
        unsent, self._unsent = self._unsent, {}
        pipe = self.client.pipeline(transaction=True)
        for name, (fields, ttl) in unsent.items():
            self._add(pipe, name, fields, ttl)
        if await self.guard(pipe.execute()) is None:  # down again: keep them for later
            for name, (fields, ttl) in unsent.items():
                self._keep(name, fields, ttl)

    async def put_job(self, job_id: str, record: dict[str, Any], ttl: float) -> None:
        payload = json.dumps(record, separators=(",", ":"))
        done = await self.guard(
            self.client.set(self.names.plain("job", job_id), payload, px=int(ttl * 1000))
        )
        if done is None:
            await self.local.put_job(job_id, record, ttl)

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        if self.degraded():
            return await self.local.get_job(job_id)
        raw = await self.guard(self.client.get(self.names.plain("job", job_id)))
        if raw is None:
            return await self.local.get_job(job_id)
        found = json.loads(raw)
        return found if isinstance(found, dict) else None

    async def claim_job(
        self, job_id: str, record: dict[str, Any], ttl: float
    ) -> dict[str, Any] | None:
        stored = await self.claim_first(job_id, record, ttl)
        if stored is None:  # an Idempotency-Key holds per replica meanwhile (fail open)
            return await self.local.claim_job(job_id, record, ttl)
        if stored:
            return None
        return await self.get_job(job_id) or record  # lost the race (or it just expired)

    async def claim_first(self, job_id: str, record: dict[str, Any], ttl: float) -> bool | None:
        # No fallback to memory: each replica would be first in its own (None: ask later).
        return await self.guard(self._set_new(job_id, record, ttl))

    async def _set_new(self, job_id: str, record: dict[str, Any], ttl: float) -> bool:
        payload = json.dumps(record, separators=(",", ":"))
        key = self.names.plain("job", job_id)
        return bool(await self.client.set(key, payload, px=int(ttl * 1000), nx=True))

    async def index_job(self, owner: str, job_id: str, created: float, ttl: float) -> None:
        key = self.names.plain("jobs", owner)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(key, {job_id: created})
        pipe.zremrangebyscore(key, "-inf", time.time() - ttl)
        pipe.pexpire(key, int(ttl * 1000))
        if await self.guard(pipe.execute()) is None:
            await self.local.index_job(owner, job_id, created, ttl)

    async def job_ids(
        self, owner: str, before: float | None, limit: int
    ) -> list[tuple[str, float]]:
        if self.degraded():
            return await self.local.job_ids(owner, before, limit)
        top = f"({before}" if before is not None else "+inf"
        rows = await self.guard(
            self.client.zrevrangebyscore(
                self.names.plain("jobs", owner), top, "-inf", start=0, num=limit, withscores=True
            )
        )
        if rows is None:
            return await self.local.job_ids(owner, before, limit)
        return [(str(row[0]), float(row[1])) for row in rows]
