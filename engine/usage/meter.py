"""The app's meter: budgets, usage counters and their Prometheus twins, on one clock."""

from __future__ import annotations

from ..metrics import GatewayMetrics
from ..state.base import Counters
from .budget import Budgets
from .counters import Amounts, Row, Usage
from .windows import Clock, wall_clock


class Meter:
    def __init__(self, store: Counters, metrics: GatewayMetrics | None = None) -> None:
        self.clock: Clock = wall_clock  # tests move it (a day's rollover)
        self.budgets = Budgets(store, self.now)
        self.usage = Usage(store, self.now)
        self.metrics = metrics

    def now(self) -> float:
        return self.clock()

    def record(self, row: Row, amounts: Amounts) -> None:
        """Count one finished request (sent to the store without the request waiting)."""
        if self.metrics is not None:
            self.metrics.usage(row, amounts)
        self.usage.record(row, amounts)

    async def close(self) -> None:
        await self.usage.flush()
