"""The app's meter: budgets, usage counters and their Prometheus twins, on one clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from ..metrics import GatewayMetrics
from ..state.base import Counters
from .budget import Budgets
from .counters import Amounts, Row, Usage
from .windows import Clock, wall_clock

log = logging.getLogger("pixgate.usage")


class Meter:
    def __init__(self, store: Counters, metrics: GatewayMetrics | None = None) -> None:
        self.clock: Clock = wall_clock  # tests move it (a day's rollover)
        self.budgets = Budgets(store, self.now)
        self.usage = Usage(store, self.now)
        self.metrics = metrics
        self._later: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        return self.clock()

    async def record(self, row: Row, amounts: Amounts) -> None:
        """Count one finished request; a failing store is logged, never the request's error."""
        if self.metrics is not None:
            self.metrics.usage(row, amounts)
        try:
            await self.usage.record(row, amounts)
        except Exception:
            log.exception("usage: could not record %s", row)

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
