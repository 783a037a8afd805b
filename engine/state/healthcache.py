"""A replica's read cache of fleet health: breakers and key cooldowns, at most `ttl` old.

Key health and breakers are read on every attempt and change rarely, so a replica keeps the
last read for `ttl` seconds (1 s by default) and drops it as soon as any replica publishes a
change on the deployment's channel. Staleness is therefore the pub/sub delay (well under a
millisecond on one network), and never more than `ttl` even if a message is lost. While the
subscription is down the cache is not used at all: every attempt asks Redis, as without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from ..dsl.spec import ProviderSpec
from .identity import Names

log = logging.getLogger("pixgate.state")
Guard = Callable[[Awaitable[Any]], Awaitable[Any]]
FAILURES = (aioredis.RedisError, OSError, TimeoutError, ConnectionError)
BACKOFF_FIRST, BACKOFF_CAP = 0.1, 5.0


@dataclass(slots=True)
class Health:
    """One provider as the fleet saw it when read (times in Redis's clock, ms)."""

    born: float  # time.monotonic() when the read was sent: its age bounds staleness
    skew_ms: float  # Redis's clock minus this process's wall clock
    open_until: int = 0  # the breaker: 0 closed, else open until (then half-open)
    breaker_row: bool = False  # failures are being counted: a success must reset them
    until: dict[str, int] = field(default_factory=dict)  # resting keys: until when
    dirty: set[str] = field(default_factory=set)  # keys whose next success resets something

    def now_ms(self) -> float:
        return time.time() * 1000 + self.skew_ms


class HealthCache:
    def __init__(self, client: aioredis.Redis, names: Names, ttl: float, timeout: float) -> None:
        self.client = client
        self.names = names
        self.ttl = ttl
        self.timeout = timeout
        self.live = False  # subscribed: changes reach this replica
        self._entries: dict[str, Health] = {}
        self._generation: dict[str, int] = {}  # bumped by each invalidation of a provider
        self._loading: dict[str, asyncio.Task[Health | None]] = {}

    def fresh(self, provider: str) -> Health | None:
        entry = self._entries.get(provider)
        if entry is None or not self.live or time.monotonic() - entry.born >= self.ttl:
            return None
        return entry

    async def get(self, provider: ProviderSpec, guard: Guard) -> Health | None:
        """The provider's health, read from Redis at most once per `ttl` (one read in flight
        per provider); None when the cache is off or Redis failed."""
        entry = self.fresh(provider.id)
        if entry is not None or not self.live or self.ttl <= 0:
            return entry
        task = self._loading.get(provider.id)
        if task is None:
            task = asyncio.create_task(self._load(provider, guard))
            self._loading[provider.id] = task
            task.add_done_callback(lambda _: self._loading.pop(provider.id, None))
        return await asyncio.shield(task)

    async def _load(self, provider: ProviderSpec, guard: Guard) -> Health | None:
        pid = provider.id
        generation = self._generation.get(pid, 0)
        born = time.monotonic()
        keys = provider.auth.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        pipe.hget(self.names.of(pid, "breaker"), "open_until")
        pipe.exists(self.names.of(pid, "breaker"))
        for key in keys:
            pipe.hmget(self.names.key(pid, key)[0], "until", "strikes")
        wall = time.time()
        answers = await guard(pipe.execute())
        if answers is None:
            return None
        seconds, micros = answers[0]
        skew = int(seconds) * 1000 + int(micros) / 1000 - (wall + time.time()) * 500
        entry = Health(born, skew, int(answers[1] or 0), bool(answers[2]))
        for key, (until, strikes) in zip(keys, answers[3:], strict=True):
            if until and int(until):
                entry.until[key] = int(until)
                entry.dirty.add(key)
            elif strikes:
                entry.dirty.add(key)
        # A change published while this read was out may not be in it: keep it unstored.
        if self.live and self._generation.get(pid, 0) == generation:
            self._entries[pid] = entry
        return entry

    def drop(self, provider: str) -> None:
        self._generation[provider] = self._generation.get(provider, 0) + 1
        self._entries.pop(provider, None)

    def clear(self) -> None:
        for provider in list(self._entries):
            self.drop(provider)
        for provider in list(self._generation):
            self._generation[provider] += 1

    async def listen(self) -> None:
        """Follow the change channel for ever, resubscribing with backoff after a failure.
        Messages may have been missed meanwhile, so each (re)subscription starts empty."""
        delay = BACKOFF_FIRST
        while True:
            pubsub = self.client.pubsub()
            try:
                async with asyncio.timeout(self.timeout * 4):
                    await pubsub.subscribe(self.names.channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.clear()
                        self.live = True
                        delay = BACKOFF_FIRST
                    elif message["type"] == "message":
                        self.drop(str(message["data"]))
            except FAILURES as exc:
                log.debug("state: change channel lost (%s); cache off", type(exc).__name__)
            finally:
                self.live = False
                self.clear()
                with contextlib.suppress(*FAILURES):
                    async with asyncio.timeout(self.timeout):
                        await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(BACKOFF_CAP, delay * 2)
