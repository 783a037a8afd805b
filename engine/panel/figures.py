"""The overview's arithmetic: per (route, provider) figures of one minute, and the windows and
timeline merged from any number of them (one replica's buckets, or a whole fleet's).

Percentiles come from samples that each stand for several requests: a series keeps at most
SAMPLES durations of its minute, and publishes at most POINTS evenly spaced order statistics
of them, so every sample is weighted by how many requests it stands for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MINUTES = 60
SAMPLES = 256  # durations kept per bucket and series in a process
POINTS = 32  # order statistics per series shared with the fleet

Key = tuple[str, str]  # (route, provider)
Bucket = tuple[int, Mapping[Key, "Series"]]  # (minute since the epoch, series)


@dataclass(slots=True)
class Series:
    count: int = 0
    ok: int = 0
    timed: int = 0  # requests with a measured overhead (event streams have none)
    durations: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)

    def add(self, ok: bool, seconds: float, overhead: float | None) -> None:
        self.count += 1
        self.ok += ok
        if len(self.durations) < SAMPLES:
            self.durations.append(seconds)
        if overhead is not None:
            self.timed += 1
            if len(self.overheads) < SAMPLES:
                self.overheads.append(overhead)

    def to_json(self, route: str, provider: str) -> dict[str, Any]:
        return {
            "r": route, "p": provider, "n": self.count, "ok": self.ok, "t": self.timed,
            "d": _points(self.durations), "o": _points(self.overheads),
        }  # fmt: skip

    @staticmethod
    def from_json(row: Any) -> tuple[Key, Series] | None:
        """A published row, or None when it is not one (a newer or damaged writer)."""
        try:
            key = (str(row["r"]), str(row["p"]))
            series = Series(
                count=max(0, int(row["n"])),
                ok=max(0, int(row["ok"])),
                timed=max(0, int(row["t"])),
                durations=[float(v) for v in row["d"][:SAMPLES]],
                overheads=[float(v) for v in row["o"][:SAMPLES]],
            )
        except (KeyError, TypeError, ValueError):
            return None
        return key, series


def _points(values: list[float]) -> list[float]:
    """At most POINTS order statistics, evenly spread (the middle of each slice)."""
    ordered = sorted(values)
    if len(ordered) > POINTS:
        ordered = [ordered[int((i + 0.5) * len(ordered) / POINTS)] for i in range(POINTS)]
    return [round(v, 6) for v in ordered]


@dataclass(slots=True)
class _Merged:
    count: int = 0
    ok: int = 0
    durations: list[tuple[float, float]] = field(default_factory=list)  # (value, weight)
    overheads: list[tuple[float, float]] = field(default_factory=list)

    def add(self, s: Series) -> None:
        self.count += s.count
        self.ok += s.ok
        if s.durations:
            self.durations += [(v, s.count / len(s.durations)) for v in s.durations]
        if s.overheads:
            self.overheads += [(v, s.timed / len(s.overheads)) for v in s.overheads]


def _percentile(values: list[tuple[float, float]], q: float) -> float | None:
    """The first value whose cumulative weight passes q of the total (equal weights: the
    element at int(q * n) of the sorted list)."""
    if not values:
        return None
    ordered = sorted(values)
    target = q * sum(w for _, w in ordered)
    seen = 0.0
    for value, weight in ordered:
        seen += weight
        if seen > target:
            return value
    return ordered[-1][0]


def window(buckets: Iterable[Bucket], now_minute: int, minutes: int) -> list[dict[str, Any]]:
    """Per (route, provider) over the last `minutes`: rate, success, p50/p99, overhead."""
    first = now_minute - minutes + 1
    merged: dict[Key, _Merged] = {}
    for minute, series in buckets:
        if first <= minute <= now_minute:
            for key, s in series.items():
                merged.setdefault(key, _Merged()).add(s)
    rows = []
    for (route, provider), m in sorted(merged.items()):
        rows.append(
            {
                "route": route,
                "provider": provider,
                "requests": m.count,
                "per_second": round(m.count / (minutes * 60), 4),
                "success_rate": round(m.ok / m.count, 4) if m.count else None,
                "p50_s": _percentile(m.durations, 0.5),
                "p99_s": _percentile(m.durations, 0.99),
                "overhead_p50_ms": _ms(_percentile(m.overheads, 0.5)),
                "overhead_p99_ms": _ms(_percentile(m.overheads, 0.99)),
            }
        )
    return rows


def timeline(buckets: Iterable[Bucket], now_minute: int) -> list[dict[str, int]]:
    """Requests and errors per minute over the last hour, oldest first, gaps as zeros."""
    counts: dict[int, list[int]] = {}
    for minute, series in buckets:
        total = counts.setdefault(minute, [0, 0])
        total[0] += sum(s.count for s in series.values())
        total[1] += sum(s.ok for s in series.values())
    out = []
    for minute in range(now_minute - MINUTES + 1, now_minute + 1):
        count, ok = counts.get(minute, (0, 0))
        out.append({"minute": minute * 60, "requests": count, "errors": count - ok})
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
