"""`Retry-After` from an upstream, read per RFC 9110 §10.2.3 and never trusted.

The header is delta-seconds or an HTTP-date; `retry-after-ms` (OpenAI's) is milliseconds.
Whatever an upstream sends, the answer is None (absent or unreadable: the key pool's own
backoff applies) or a finite number of seconds from 0 to `CEILING`; the key pool then clamps
it to the provider's `max_cooldown`. `inf`, `nan`, `1e12` or a date in the year 99999 once
raised OverflowError (a 500) or put a key out for millennia.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

CEILING = 7 * 24 * 3600.0  # no upstream wait is believed beyond a week
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # delta-seconds; a fraction is tolerated


def parse(value: str, wall: Callable[[], float] = time.time, scale: float = 1.0) -> float | None:
    """Seconds to wait, or None when `value` is neither a number nor an HTTP-date."""
    text = value.strip()
    if _NUMBER.fullmatch(text):
        seconds = float(text) * scale  # "9" * 400 is inf here, never an error
        return min(seconds, CEILING) if math.isfinite(seconds) else CEILING
    if scale != 1.0 or len(text) > 64:
        return None  # milliseconds are never a date; no date is that long
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # asctime dates carry no zone; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    try:
        seconds = when.timestamp() - wall()
    except (ValueError, OverflowError, OSError):
        return None
    return min(max(0.0, seconds), CEILING)


def from_headers(headers: Mapping[str, str], wall: Callable[[], float] = time.time) -> float | None:
    """`retry-after-ms`, else `retry-after`, as seconds. `headers` is looked up by those
    lower-case names: aiohttp's own headers (case-insensitive) or a lower-cased copy."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            seconds = parse(value, wall, scale)
            if seconds is not None:
                return seconds
    return None


def clamp(seconds: float | None, ceiling: float) -> float | None:
    """An upstream's wait, bounded by the provider's `max_cooldown` (None stays None)."""
    if seconds is None:
        return None
    if not math.isfinite(seconds):
        return ceiling
    return min(max(0.0, seconds), ceiling)
