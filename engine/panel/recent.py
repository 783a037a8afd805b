"""What the overview shows: the last hour of client requests in one-minute buckets, per
route and provider, and the last errors with their reason. In-process and bounded."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MINUTES = 60
SAMPLES = 256  # durations kept per bucket and series, for percentiles
ERRORS = 50


@dataclass(slots=True)
class _Series:
    count: int = 0
    ok: int = 0
    durations: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)

    def add(self, ok: bool, seconds: float, overhead: float | None) -> None:
        self.count += 1
        self.ok += ok
        if len(self.durations) < SAMPLES:
            self.durations.append(seconds)
        if overhead is not None and len(self.overheads) < SAMPLES:
            self.overheads.append(overhead)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class RecentStats:
    clock: Callable[[], float] = time.time
    _buckets: deque[tuple[int, dict[tuple[str, str], _Series]]] = field(
        default_factory=lambda: deque(maxlen=MINUTES)
    )
    errors: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ERRORS))

    def record(
        self,
        route: str,
        provider: str,
        status: int,
        seconds: float,
        overhead: float | None,
        error: str | None = None,
    ) -> None:
        now = self.clock()
        minute = int(now // 60)
        if not self._buckets or self._buckets[-1][0] != minute:
            self._buckets.append((minute, {}))
        series = self._buckets[-1][1].setdefault((route, provider), _Series())
        series.add(status < 400, seconds, overhead)
        if status >= 400:
            self.errors.appendleft(
                {"at": now, "route": route, "provider": provider, "status": status,
                 "message": error or ""}
            )  # fmt: skip

    def window(self, minutes: int) -> list[dict[str, Any]]:
        """Per (route, provider) over the last `minutes`: rate, success, p50/p99, overhead."""
        first = int(self.clock() // 60) - minutes + 1
        merged: dict[tuple[str, str], _Series] = {}
        for minute, series in self._buckets:
            if minute < first:
                continue
            for key, s in series.items():
                m = merged.setdefault(key, _Series())
                m.count += s.count
                m.ok += s.ok
                m.durations += s.durations
                m.overheads += s.overheads
        rows = []
        for (route, provider), s in sorted(merged.items()):
            rows.append(
                {
                    "route": route,
                    "provider": provider,
                    "requests": s.count,
                    "per_second": round(s.count / (minutes * 60), 4),
                    "success_rate": round(s.ok / s.count, 4) if s.count else None,
                    "p50_s": _percentile(s.durations, 0.5),
                    "p99_s": _percentile(s.durations, 0.99),
                    "overhead_p50_ms": _ms(_percentile(s.overheads, 0.5)),
                    "overhead_p99_ms": _ms(_percentile(s.overheads, 0.99)),
                }
            )
        return rows

    def timeline(self) -> list[dict[str, int]]:
        """Requests and errors per minute over the last hour, oldest first, gaps as zeros."""
        now = int(self.clock() // 60)
        by_minute = {m: s for m, s in self._buckets}
        out = []
        for minute in range(now - MINUTES + 1, now + 1):
            series = by_minute.get(minute, {})
            count = sum(s.count for s in series.values())
            ok = sum(s.ok for s in series.values())
            out.append({"minute": minute * 60, "requests": count, "errors": count - ok})
        return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
