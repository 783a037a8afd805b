"""Client budgets (clients.yaml `budget`): USD per UTC day and month at list price.

Before a call its estimate is reserved against what is left, atomically in the state backend
(one Lua script in Redis, so a fleet shares one spend): a request that does not fit is
refused up front, and racing requests cannot both take the last dollars. After the call the
reservation is settled to the actual cost (what `x-pixgate-cost-usd` says). Amounts are kept
in micro-dollars, integers, so that totals never drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..clients.spec import Budget
from ..state.base import Counters
from .windows import Clock, day_of, month_of, until_next_day, until_next_month, wall_clock

MICRO = 1_000_000
FIELD = "spent_micro_usd"
DAY_TTL = 3 * 86400.0  # a day's total outlives its day (settlements of requests in flight)
MONTH_TTL = 62 * 86400.0


def micro(usd: float) -> int:
    return round(usd * MICRO)


def dollars(amount: float) -> str:
    """Micro-dollars as `$1.50`, `$0.0027`: cents always, more places only when needed."""
    whole, frac = f"{amount / MICRO:,.6f}".split(".")
    return f"${whole}.{frac.rstrip('0').ljust(2, '0')}"


class OverBudget(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(slots=True)
class Hold:
    """A reservation: the windows charged and the micro-dollars reserved in each."""

    names: tuple[str, ...]
    ttls: tuple[float, ...]
    reserved: int
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Window:
    name: str  # the counter's name in the state backend
    label: str  # "day" / "month", for messages
    limit: int
    ttl: float
    resets_in: float


class Budgets:
    def __init__(self, store: Counters, clock: Clock = wall_clock) -> None:
        self.store = store
        self.clock = clock

    def windows(self, client: str, budget: Budget) -> list[Window]:
        now = self.clock()
        found = []
        if budget.usd_per_day is not None:
            name = f"budget:{{{client}}}:day:{day_of(now)}"
            found.append(
                Window(name, "day", micro(budget.usd_per_day), DAY_TTL, until_next_day(now))
            )
        if budget.usd_per_month is not None:
            name = f"budget:{{{client}}}:month:{month_of(now)}"
            found.append(
                Window(name, "month", micro(budget.usd_per_month), MONTH_TTL, until_next_month(now))
            )
        return found

    async def reserve(self, client: str, budget: Budget, estimate: float, what: str) -> Hold:
        """Reserve `estimate` USD in every window of the client's budget, or raise OverBudget
        saying which window, what was spent and what this request would cost (`what`)."""
        windows = self.windows(client, budget)
        amount = micro(estimate)
        names = tuple(w.name for w in windows)
        ok, before = await self.store.reserve(
            names, FIELD, amount, [w.limit for w in windows], max(w.ttl for w in windows)
        )
        if not ok:
            window, spent = next(
                (w, s) for w, s in zip(windows, before, strict=True) if s + amount > w.limit
            )
            hours = window.resets_in / 3600
            raise OverBudget(
                f"client '{client}' has a budget of {dollars(window.limit)} per UTC "
                f"{window.label} and has spent {dollars(spent)} of it (requests in flight "
                f"included); this request is estimated at {dollars(amount)} ({what}), more "
                f"than the {dollars(max(0, window.limit - spent))} left. The budget resets "
                f"in {hours:.1f} h.",
                window.resets_in,
            )
        return Hold(names, tuple(w.ttl for w in windows), amount)

    async def settle(self, hold: Hold, actual: float) -> None:
        """Charge the actual cost instead of the estimate (once)."""
        if hold.settled:
            return
        hold.settled = True
        delta = micro(actual) - hold.reserved
        if delta:
            for name, ttl in zip(hold.names, hold.ttls, strict=True):
                await self.store.add_usage(name, {FIELD: float(delta)}, ttl)

    async def spent(self, client: str, budget: Budget) -> dict[str, float]:
        """USD spent in the current windows ({"day": ..., "month": ...})."""
        out = {}
        for w in self.windows(client, budget):
            totals = await self.store.get_usage(w.name)
            out[w.label] = totals.get(FIELD, 0.0) / MICRO
        return out
