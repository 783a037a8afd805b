"""Usage counters per client x route x provider x model x UTC day: requests, images, failures,
cost and upstream seconds.

One hash per day in the state backend (`usage:day:YYYY-MM-DD`, kept 400 days), one field per
row and measure, so a day holds as many fields as the config has combinations (every name in
a row comes from the config, never from a client's free text). Redis when configured: every
replica adds to the same hash. Memory otherwise, flushed to a file (usage/persist.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from ..state.base import Counters
from .budget import MICRO
from .windows import Clock, day_of, wall_clock

KEEP_DAYS = 400
DIMENSIONS = ("day", "client", "route", "provider", "model")
MEASURES = ("requests", "images", "failures", "cost_usd", "upstream_seconds")
SEP = "\t"  # no config name holds a tab
STORED_COST = "cost_micro_usd"  # integers: totals never drift


@dataclass(frozen=True, slots=True)
class Row:
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


def day_name(day: str) -> str:
    return f"usage:day:{day}"


class Usage:
    def __init__(self, store: Counters, clock: Clock = wall_clock) -> None:
        self.store = store
        self.clock = clock

    async def record(self, row: Row, amounts: Amounts) -> None:
        prefix = SEP.join((row.client, row.route, row.provider, row.model)) + SEP
        values = {
            "requests": float(amounts.requests),
            "images": float(amounts.images),
            "failures": float(amounts.failures),
            STORED_COST: float(round(amounts.cost_usd * MICRO)),
            "upstream_seconds": round(amounts.upstream_seconds, 6),
        }
        fields = {prefix + k: v for k, v in values.items() if v}
        await self.store.add_usage(day_name(day_of(self.clock())), fields, KEEP_DAYS * 86400.0)

    async def query(
        self, first: dt.date, last: dt.date, group_by: tuple[str, ...]
    ) -> list[dict[str, str | int | float]]:
        """Totals per group, for the UTC days first..last (both included), sorted by group."""
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
