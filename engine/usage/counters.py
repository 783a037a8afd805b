"""Usage counters per client x route x provider x model x UTC day: requests, images, failures,
cost and upstream seconds.

One hash per day in the state backend (`day:YYYY-MM-DD`, kept 400 days), one field per row
and measure, so a day holds as many fields as the config has combinations (every name in a
row comes from the config, never from a client's free text). Redis when configured: every
replica adds to the same hash. Memory otherwise, flushed to a file (usage/persist.py).

No request waits for its count: counts are summed here and sent at most `delay` (1 s) after
the first of them, those of every request finished by then in one call (with Redis, one
MULTI..EXEC), so a busy gateway writes its counts once a second, not once per request. A query
and shutdown send what is pending first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ..state.base import Counters
from .budget import MICRO
from .windows import Clock, day_of, wall_clock

log = logging.getLogger("pixgate.usage")
KEEP_DAYS = 400
DIMENSIONS = ("day", "client", "route", "provider", "model")
MEASURES = ("requests", "images", "failures", "cost_usd", "upstream_seconds")
SEP = "\t"  # no config name holds a tab
STORED_COST = "cost_micro_usd"  # integers: totals never drift


class Row(NamedTuple):
    client: str
    route: str
    provider: str
    model: str


@dataclass(slots=True)
class Amounts:
    requests: int = 1
    images: int = 0
    failures: int = 0
    cost_usd: float = 0.0
    upstream_seconds: float = 0.0


@functools.lru_cache(maxsize=1024)
def _fields(row: Row) -> tuple[str, ...]:
    """The row's five field names, in the order of MEASURES (rows repeat: the names come
    from the config)."""
    prefix = SEP.join(row) + SEP
    return tuple(
        prefix + m for m in ("requests", "images", "failures", STORED_COST, "upstream_seconds")
    )


def day_name(day: str) -> str:
    return f"day:{day}"


class Usage:
    def __init__(self, store: Counters, clock: Clock = wall_clock, delay: float = 1.0) -> None:
        self.store = store
        self.clock = clock
        self.delay = delay
        # UTC day -> row -> its sums, in the order of MEASURES (a field each when sent;
        # cost in micro-USD, upstream time in microseconds)
        self._pending: dict[str, dict[Row, list[float]]] = {}
        self._sending: asyncio.Task[None] | None = None
        self._due: asyncio.TimerHandle | None = None  # the send of what is pending

    def record(self, row: Row, amounts: Amounts) -> None:
        """Add one request's amounts to its row's pending sums: cost in whole micro-USD,
        upstream time in whole microseconds (rounded per request; seconds again when sent:
        `round(x * MICRO)` costs a quarter of `round(x, 6)`)."""
        day = day_of(self.clock())
        rows = self._pending.get(day)
        if rows is None:
            rows = self._pending[day] = {}
        sums = rows.get(row)
        if sums is None:
            sums = rows[row] = [0.0] * len(MEASURES)
        sums[0] += amounts.requests
        sums[1] += amounts.images
        sums[2] += amounts.failures
        sums[3] += round(amounts.cost_usd * MICRO)
        sums[4] += round(amounts.upstream_seconds * MICRO)
        if self._due is None and self._sending is None:  # else the running send looks after
            self._due = asyncio.get_running_loop().call_later(self.delay, self._start)

    def _start(self) -> None:
        self._due = None
        if self._sending is None:
            self._sending = asyncio.ensure_future(self._send_loop())

    async def _send_loop(self) -> None:
        try:
            await self._send()
        finally:
            self._sending = None
            if self._pending and self._due is None:  # counted while that was out
                self._due = asyncio.get_running_loop().call_later(self.delay, self._start)

    async def _send(self) -> None:
        pending, self._pending = self._pending, {}
        for day, rows in pending.items():
            fields = {}
            for row, sums in rows.items():
                sums[4] /= MICRO  # upstream seconds (summed in microseconds)
                for field, amount in zip(_fields(row), sums, strict=True):
                    if amount:
                        fields[field] = amount
            name = day_name(day)
            try:
                await self.store.add_usage(name, fields, KEEP_DAYS * 86400.0)
            except Exception:  # a store that fails open should not; never the caller's error
                log.exception("usage: could not record %d counts of %s", len(fields), name)

    async def flush(self) -> None:
        """Send what is pending now (before a query, at shutdown)."""
        if self._due is not None:
            self._due.cancel()
            self._due = None
        if self._sending is not None:
            await asyncio.wait([self._sending], timeout=5)
        await self._send()

    async def query(
        self, first: dt.date, last: dt.date, group_by: tuple[str, ...]
    ) -> list[dict[str, str | int | float]]:
        """Totals per group, for the UTC days first..last (both included), sorted by group."""
        await self.flush()
        groups: dict[tuple[str, ...], dict[str, float]] = {}
        for day in _days(first, last):
            totals = await self.store.get_usage(day_name(day))
            for field, value in totals.items():
                parts = field.split(SEP)
                if len(parts) != 5:
                    continue
                where = dict(zip(DIMENSIONS, (day, *parts[:4]), strict=True))
                key = tuple(where[d] for d in group_by)
                sums = groups.setdefault(key, dict.fromkeys(MEASURES, 0.0))
                measure = "cost_usd" if parts[4] == STORED_COST else parts[4]
                if measure in sums:
                    sums[measure] += value
        rows: list[dict[str, str | int | float]] = []
        for key in sorted(groups):
            sums = groups[key]
            row: dict[str, str | int | float] = dict(zip(group_by, key, strict=True))
            row.update({m: int(sums[m]) for m in ("requests", "images", "failures")})
            row["cost_usd"] = round(sums["cost_usd"] / MICRO, 6)
            row["upstream_seconds"] = round(sums["upstream_seconds"], 3)
            rows.append(row)
        return rows


def _days(first: dt.date, last: dt.date) -> Iterable[str]:
    day = first
    while day <= last:
        yield day.isoformat()
        day += dt.timedelta(days=1)
