"""UTC day and month windows, from an injectable clock (tests move it across midnight)."""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable

Clock = Callable[[], float]
DAY = 86400.0


def utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)


def day_of(now: float) -> str:
    return _day(int(now // DAY))


@functools.lru_cache(maxsize=4)
def _day(number: int) -> str:
    """POSIX time gives every UTC day 86,400 s, so the day's number names it: formatted once
    a day, not on every request's usage count."""
    return utc(number * DAY).strftime("%Y-%m-%d")


def month_of(now: float) -> str:
    return utc(now).strftime("%Y-%m")


def until_next_day(now: float) -> float:
    return DAY - now % DAY


def until_next_month(now: float) -> float:
    t = utc(now)
    first = dt.datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=dt.UTC)
    return first.timestamp() - now


wall_clock: Clock = time.time  # the C function itself: no Python frame per read
