"""Client limits at the door: allowed models, max_n and max_pixels, then the counted limits
(rpm, images per minute and day, concurrent) through the `limits` package, in memory or in
Redis (PIXGATE_REDIS_URL) so that a fleet shares them. Redis down: admit (fail open)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..usage.budget import Budgets, Hold
from .spec import ClientSpec

if TYPE_CHECKING:
    from .counters import Counters

log = logging.getLogger("pixgate.clients")
CALL_TIMEOUT = 0.5  # a slow Redis must not hold requests up
LEASE = 900.0  # a concurrency slot of a replica that died frees itself after this
WARN_EVERY = 30.0


class Refused(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


@dataclass(slots=True)
class Ticket:
    """What an admitted request holds; `release` gives back its concurrency slot. `hold` is
    its budget reservation (settled by the request's end, engine/api/metering.py)."""

    admission: Admission | None = None
    slot: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hold: Hold | None = None
    budgets: Budgets | None = None

    async def release(self) -> None:
        if self.hold is not None and self.budgets is not None and not self.hold.settled:
            await self.budgets.settle(self.hold, 0.0)  # never ran: nothing to charge
        if self.admission is not None and self.slot is not None:
            slot, self.slot = self.slot, None
            await self.admission.leave(slot)


class Admission:
    def __init__(self, redis_url: str | None = None, prefix: str = "pixgate") -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.shared = bool(redis_url)
        # Shared counters are set up at start like the rest of the Redis state; the memory
        # store waits for the first counted limit (engine/clients/counters.py says why).
        self._counters = self._open() if redis_url else None
        self._warned = 0.0

    def _open(self) -> Counters:
        from .counters import Counters  # loads `limits`: only once a count is needed

        return Counters(self.redis_url, self.prefix, CALL_TIMEOUT)

    @property
    def counters(self) -> Counters:
        if self._counters is None:
            self._counters = self._open()
        return self._counters

    async def admit(
        self, client: ClientSpec, names: tuple[str, ...], n: int, pixels: int | None
    ) -> Ticket:
        if not client.allows(*names):
            raise Refused(
                403,
                f"client '{client.name}' may not use model '{names[0]}'",
                "model_not_allowed",
                "model",
            )
        lim = client.limits
        if lim.max_n is not None and n > lim.max_n:
            raise Refused(
                400, f"n={n} is more than this client's max_n of {lim.max_n}", "n_too_large", "n"
            )
        if lim.max_pixels is not None and pixels is not None and pixels > lim.max_pixels:
            raise Refused(
                400,
                f"size of {pixels} pixels is more than this client's max_pixels of "
                f"{lim.max_pixels}",
                "size_too_large",
                "size",
            )
        ticket = Ticket()
        try:
            await asyncio.wait_for(self._count(client, n, ticket), CALL_TIMEOUT * 4)
        except Refused:
            await ticket.release()
            raise
        except (Exception, TimeoutError) as exc:  # the limiter's store is down: fail open
            self._degraded(exc)
        return ticket

    async def _count(self, client: ClientSpec, n: int, ticket: Ticket) -> None:
        lim = client.limits
        if lim.concurrent is not None:
            slot = f"concurrent:{client.name}"
            now = await self.counters.incr(slot, int(LEASE))
            ticket.admission, ticket.slot = self, slot
            if now > lim.concurrent:
                raise Refused(
                    429,
                    f"client '{client.name}' has {lim.concurrent} requests in flight already",
                    "rate_limit_exceeded",
                    headers={"Retry-After": "1"},
                )
        if lim.rpm is not None:
            await self._hit(False, lim.rpm, client, "requests", 1, ticket)
        if lim.images_per_minute is not None:
            await self._hit(False, lim.images_per_minute, client, "images", n, ticket)
        if lim.images_per_day is not None:
            day = time.strftime("%Y-%m-%d", time.gmtime())
            await self._hit(True, lim.images_per_day, client, f"images-day:{day}", n, ticket)

    async def _hit(
        self, per_day: bool, limit: int, client: ClientSpec, what: str, cost: int, ticket: Ticket
    ) -> None:
        window = await self.counters.hit(per_day, limit, client.name, what, cost)
        reset = max(0.0, window.reset_time - time.time())
        if what == "requests":  # OpenAI's request headers describe the rpm limit
            ticket.headers.update(
                {
                    "x-ratelimit-limit-requests": str(window.amount),
                    "x-ratelimit-remaining-requests": str(max(0, window.remaining)),
                    "x-ratelimit-reset-requests": f"{reset:.0f}s",
                }
            )
        if not window.ok:
            per = "day" if per_day else "minute"
            unit = "requests" if what == "requests" else "images"
            raise Refused(
                429,
                f"client '{client.name}' is over its limit of {window.amount} {unit} per {per}; "
                f"try again in {max(1, round(reset))} s",
                "rate_limit_exceeded",
                headers={"Retry-After": str(max(1, round(reset))), **ticket.headers},
            )

    async def leave(self, slot: str) -> None:
        try:
            await asyncio.wait_for(self.counters.incr(slot, int(LEASE), amount=-1), CALL_TIMEOUT)
        except (Exception, TimeoutError) as exc:  # the lease expires by itself
            self._degraded(exc)

    def _degraded(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "client limits: the %s store failed (%s); admitting without counting",
                "Redis" if self.shared else "memory",
                type(exc).__name__,
            )
