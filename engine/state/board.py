"""The admin overview's figures, shared by a fleet through Redis.

Every replica (each worker process is one) writes its own recent figures under its own name
every few seconds, and reads everyone's when an admin opens the overview. Nothing here is on
a client's request path. Layout (a hash tag keeps it in one Redis Cluster slot); every key
expires KEEP after its replica last wrote it, so a replica that is gone drops out by itself:

  <prefix>:{fleet}:replicas          ZSET  member -> last seen (unix ms), trimmed to KEEP
  <prefix>:{fleet}:stats:<member>    HASH  info -> JSON about the replica (host, pid, config);
                                           m:<minute> -> JSON rows of that minute (<= 60 kept)
  <prefix>:{fleet}:errors:<member>   LIST  JSON errors, newest first, at most MAX_ERRORS
  <prefix>:{fleet}:login:<address>   HASH  failed admin sign-ins of one client address (its
                                           SHA-256): count, until (ms); expires 2 x the cap

The sign-in back-off is shared too, so a client address cannot try N times as many admin keys
against N replicas.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .base import StateStats
from .config import RedisConfig

log = logging.getLogger("pixgate.state")
T = TypeVar("T")
KEEP_MS = 65 * 60 * 1000  # an hour of minutes, and a little more
MAX_REPLICAS = 64  # the most recently seen are read; more is a fleet this view does not serve
MAX_ERRORS = 50
FAILURES = (RedisError, OSError, TimeoutError, ConnectionError)


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS: the address's hash; ARGV: first delay ms, cap ms. Returns the delay (ms) from now.
LOGIN_FAILED = (
    _NOW
    + """
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
local delay = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) * 2 ^ math.min(count - 1, 30))
redis.call('HSET', KEYS[1], 'until', now + delay)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return math.floor(delay)
"""
)
# KEYS: the address's hash. Returns ms until the address may try again (0: now).
LOGIN_WAIT = (
    _NOW
    + """
local untl = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
return math.max(0, untl - now)
"""
)


@dataclass(slots=True)
class Published:
    """What one replica last wrote: its info, its minutes' rows, its last errors."""

    member: str
    seen: float  # unix seconds
    info: dict[str, Any]
    minutes: dict[int, list[Any]]
    errors: list[dict[str, Any]]


class FleetBoard:
    def __init__(self, client: aioredis.Redis, config: RedisConfig, stats: StateStats) -> None:
        self.client = client
        self.prefix = config.prefix
        self.replica = config.replica  # PIXGATE_REPLICA_ID, default hostname:pid
        self.timeout = max(1.0, config.timeout * 4)  # a few round trips, never a client's wait
        self.stats = stats
        self.failing = False
        self._login_failed = client.register_script(LOGIN_FAILED)
        self._login_wait = client.register_script(LOGIN_WAIT)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, "{fleet}", *parts))

    async def _run(self, call: Awaitable[T]) -> T | None:
        """The call's result, or None when Redis failed or was slower than the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                result = await call
        except FAILURES as exc:
            if asyncio.iscoroutine(call):
                call.close()
            self.stats.errors += 1
            if not self.failing:
                self.failing = True
                log.warning(
                    "state: the admin overview cannot reach Redis (%s); it shows this "
                    "replica's own figures until Redis is back", type(exc).__name__,
                )  # fmt: skip
            return None
        if self.failing:
            self.failing = False
            log.warning("state: the admin overview reaches Redis again (fleet-wide figures)")
        return result

    async def publish(
        self,
        member: str,
        info: dict[str, Any],
        minutes: dict[int, list[dict[str, Any]]],
        drop: list[int],
        errors: list[dict[str, Any]],
        replace: bool = False,
    ) -> bool | None:
        """Write this replica's info, changed minutes and new errors (oldest first); forget
        the minutes in `drop`. None when it could not (the caller tries again later), else
        whether this replica's figures were there before (False: a first write, or a Redis
        that restarted empty or expired them, so the caller should write all of them, with
        `replace`: its errors then replace the listed ones)."""
        if self.stats.degraded:
            return None
        now_ms = int(time.time() * 1000)
        replicas, stats = self._key("replicas"), self._key("stats", member)
        fields = {"info": _dumps(info), **{f"m:{m}": _dumps(rows) for m, rows in minutes.items()}}
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(stats)
        pipe.zadd(replicas, {member: now_ms})
        pipe.zremrangebyscore(replicas, "-inf", now_ms - KEEP_MS)
        pipe.pexpire(replicas, KEEP_MS)
        pipe.hset(stats, mapping=fields)  # type: ignore[arg-type]
        if drop:
            pipe.hdel(stats, *[f"m:{m}" for m in drop])
        pipe.pexpire(stats, KEEP_MS)
        listed = self._key("errors", member)
        if replace:
            pipe.delete(listed)
        if errors:
            pipe.lpush(listed, *[_dumps(e) for e in errors[-MAX_ERRORS:]])
            pipe.ltrim(listed, 0, MAX_ERRORS - 1)
            pipe.pexpire(listed, KEEP_MS)
        answers = await self._run(pipe.execute())
        return None if answers is None else bool(answers[0])

    async def gather(self) -> list[Published] | None:
        """Every replica seen within KEEP (the MAX_REPLICAS latest), or None when Redis
        cannot be read now."""
        if self.stats.degraded:
            return None
        return await self._run(self._gather())

    async def _gather(self) -> list[Published]:
        since = int(time.time() * 1000) - KEEP_MS
        rows = await self.client.zrevrangebyscore(
            self._key("replicas"), "+inf", since, start=0, num=MAX_REPLICAS, withscores=True
        )
        members = [(str(row[0]), float(row[1])) for row in rows]
        pipe = self.client.pipeline(transaction=False)
        for member, _ in members:
            pipe.hgetall(self._key("stats", member))
            pipe.lrange(self._key("errors", member), 0, MAX_ERRORS - 1)
        answers = await pipe.execute() if members else []
        out = []
        for i, (member, seen) in enumerate(members):
            fields, errors = answers[2 * i], answers[2 * i + 1]
            info = _loads(fields.get("info"))
            minutes = {}
            for name, value in fields.items():
                kept = _loads(value) if name.startswith("m:") else None
                if isinstance(kept, list) and name[2:].isdigit():
                    minutes[int(name[2:])] = kept
            out.append(
                Published(
                    member=member,
                    seen=seen / 1000,
                    info=info if isinstance(info, dict) else {},
                    minutes=minutes,
                    errors=[e for e in map(_loads, errors) if isinstance(e, dict)],
                )
            )
        return out

    # --- the admin sign-in back-off, fleet-wide -----------------------------------------------

    def _login(self, address: str) -> str:
        return self._key("login", hashlib.sha256(address.encode()).hexdigest()[:32])

    async def login_wait(self, address: str) -> float | None:
        """Seconds the address must still wait (None: Redis cannot tell now)."""
        if self.stats.degraded:
            return None
        ms = await self._run(self._login_wait(keys=[self._login(address)]))
        return None if ms is None else int(ms) / 1000

    async def login_failed(self, address: str, first: float, cap: float) -> float | None:
        """Count a failed sign-in; the fleet's back-off for the address, in seconds."""
        if self.stats.degraded:
            return None
        args = [int(first * 1000), int(cap * 1000)]
        ms = await self._run(self._login_failed(keys=[self._login(address)], args=args))
        return None if ms is None else int(ms) / 1000

    async def login_succeeded(self, address: str) -> None:
        if not self.stats.degraded:
            await self._run(self.client.delete(self._login(address)))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _loads(value: str | None) -> Any:
    try:
        return json.loads(value) if value else None
    except ValueError:
        return None  # a damaged or foreign value: skipped, never a 500
