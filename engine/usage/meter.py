"""The app's meter: budgets, usage counters and their Prometheus twins, on one clock."""

from __future__ import annotations

from ..metrics import GatewayMetrics
from ..state.base import Counters
from .budget import Budgets
from .counters import Amounts, Row, Usage
from .windows import Clock


class Meter:
    def __init__(self, store: Counters, metrics: GatewayMetrics | None = None) -> None:
        self.budgets = Budgets(store)
        self.usage = Usage(store)  # both on wall_clock until `clock` is moved
        self.metrics = metrics

    @property
    def clock(self) -> Clock:
        return self.usage.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        """Tests move it (a day's rollover). Handed to the budgets and the usage counters
        themselves: a request's count reads the clock once, with no call in between."""
        self.budgets.clock = self.usage.clock = clock

    def now(self) -> float:
        return self.usage.clock()

    def record(self, row: Row, amounts: Amounts) -> None:
        """Count one finished request (sent to the store without the request waiting)."""
        if self.metrics is not None:
            self.metrics.usage(row, amounts)
        self.usage.record(row, amounts)

    async def close(self) -> None:
        await self.usage.flush()
