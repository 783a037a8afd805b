"""The app's meter: budgets, usage counters and their Prometheus twins, on one clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

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
        self._later: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        return self.clock()

    def record(self, row: Row, amounts: Amounts) -> None:
        """Count one finished request (sent to the store without the request waiting)."""
        if self.metrics is not None:
            self.metrics.usage(row, amounts)
        self.usage.record(row, amounts)

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Bookkeeping past a cancellation (the cancelled task cannot await it)."""
        try:
            task = asyncio.ensure_future(work)
        except RuntimeError:  # no loop: shutting down
            work.close()
            return
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def close(self) -> None:
        if self._later:
            with contextlib.suppress(Exception):
                await asyncio.wait(self._later, timeout=2)
        await self.usage.flush()
