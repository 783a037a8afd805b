"""The store of the counted client limits (rpm, images per minute and day, concurrent): the
`limits` package, in memory or in Redis.

engine/clients/admission.py imports this module when it first needs a count, not at start: a
gateway whose clients have no counted limit never loads `limits` and its dependencies (about
2.4 MiB of an idle gateway's RSS)."""

from __future__ import annotations

from dataclasses import dataclass

from limits import RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter


@dataclass(frozen=True, slots=True)
class Window:
    """A hit on a limit: admitted or not, and the window's state after it."""

    ok: bool
    amount: int
    remaining: int
    reset_time: float  # epoch seconds


class Counters:
    def __init__(self, redis_url: str | None, prefix: str, timeout: float) -> None:
        self.storage: Storage
        if redis_url:
            self.storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=f"{prefix}:limits",
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
        else:
            self.storage = MemoryStorage()
        self.moving = MovingWindowRateLimiter(self.storage)
        self.fixed = FixedWindowRateLimiter(self.storage)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return await self.storage.incr(key, expiry, amount=amount)

    async def hit(self, per_day: bool, limit: int, client: str, what: str, cost: int) -> Window:
        """A moving window per minute, or a fixed one per calendar day (`what` names the day)."""
        limiter = self.fixed if per_day else self.moving
        item = RateLimitItemPerDay(limit) if per_day else RateLimitItemPerMinute(limit)
        ok = await limiter.hit(item, client, what, cost=cost)
        stats = await limiter.get_window_stats(item, client, what)
        return Window(ok, item.amount, stats.remaining, stats.reset_time)
