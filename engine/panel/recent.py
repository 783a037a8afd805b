"""What the overview shows: the last hour of client requests in one-minute buckets, per
route and provider, and the last errors with their reason. In-process and bounded; with
Redis state, panel/fleet.py shares the minutes that changed with the rest of the fleet."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import figures
from .figures import MINUTES, Bucket, Key, Series

ERRORS = 50
MAX_SERIES = 256  # (route, provider) pairs per minute; labels are config names, so few
MAX_MESSAGE = 500
OVERFLOW: Key = ("other", "other")


@dataclass(slots=True)
class RecentStats:
    clock: Callable[[], float] = time.time
    _buckets: deque[tuple[int, dict[Key, Series]]] = field(
        default_factory=lambda: deque(maxlen=MINUTES)
    )
    errors: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ERRORS))
    _dirty: set[int] = field(default_factory=set)  # minutes changed since the last share
    _unshared: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ERRORS))

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
        bucket = self._buckets[-1][1]
        series = bucket.get((route, provider))
        if series is None:  # a new series, not made on every request only to be dropped
            key = (route, provider) if len(bucket) < MAX_SERIES else OVERFLOW
            series = bucket.get(key)
            if series is None:
                series = bucket[key] = Series()
        series.add(status < 400, seconds, overhead)
        self._dirty.add(minute)
        if status >= 400:
            entry = {"at": now, "route": route, "provider": provider, "status": status,
                     "message": (error or "")[:MAX_MESSAGE]}  # fmt: skip
            self.errors.appendleft(entry)
            self._unshared.append(entry)

    def buckets(self) -> list[Bucket]:
        return list(self._buckets)

    def now_minute(self) -> int:
        return int(self.clock() // 60)

    def window(self, minutes: int) -> list[dict[str, Any]]:
        """Per (route, provider) over the last `minutes`: rate, success, p50/p99, overhead."""
        return figures.window(self._buckets, self.now_minute(), minutes)

    def timeline(self) -> list[dict[str, int]]:
        """Requests and errors per minute over the last hour, oldest first, gaps as zeros."""
        return figures.timeline(self._buckets, self.now_minute())

    # --- sharing with the fleet (panel/fleet.py) ----------------------------------------------

    def take_changes(
        self, everything: bool = False
    ) -> tuple[dict[int, list[dict[str, Any]]], list[dict[str, Any]]]:
        """The minutes changed since the last call, as published rows, and the errors not
        shared yet (oldest first); with `everything`, all minutes and errors kept. Hand them
        back with `give_back` if they could not go."""
        kept = dict(self._buckets)
        wanted = kept if everything else self._dirty
        minutes = {m: [s.to_json(*key) for key, s in kept[m].items()] for m in wanted if m in kept}
        errors = list(reversed(self.errors)) if everything else list(self._unshared)
        self._dirty.clear()
        self._unshared.clear()
        return minutes, errors

    def give_back(self, minutes: list[int], errors: list[dict[str, Any]]) -> None:
        self._dirty.update(minutes)
        pending = [*errors, *self._unshared]  # oldest first; the oldest fall off
        self._unshared = deque(pending[-ERRORS:], maxlen=ERRORS)
