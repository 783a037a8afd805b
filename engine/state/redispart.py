"""What every Redis-backed part of RedisState shares: the client, where names live in Redis,
the scripts, and this replica's memory state to fail open onto.

RedisState is made of these parts (records.py, redisjobs.py, rediskeys.py) and implements
`guard`: a call's result, or None when Redis failed and the memory state must answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis

from .base import StateStats
from .identity import Names
from .memory import MemoryState
from .scripts import Lua

T = TypeVar("T")


class RedisPart(ABC):
    def __init__(
        self, client: aioredis.Redis, names: Names, local: MemoryState, stats: StateStats
    ) -> None:
        self.client = client
        self.names = names
        self.local = local
        self.stats = stats
        self.lua = Lua(client)

    def degraded(self) -> bool:
        """Redis is known to be unreachable: reads go to the memory state at once."""
        return self.stats.degraded

    @abstractmethod
    async def guard(self, call: Awaitable[T], *, bounded: bool = False) -> T | None:
        """The call's result, or None when Redis failed (and local state must serve).
        `bounded`: the call bounds its own wait by the same timeout (those on `self.line`)."""
