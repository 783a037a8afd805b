"""The overview's minute buckets: one series per (route, provider), bounded per minute."""

from __future__ import annotations

from engine.panel.recent import MAX_SERIES, OVERFLOW, RecentStats


def test_series_per_pair_and_past_the_bound_under_other() -> None:
    recent = RecentStats(clock=lambda: 600.0)  # one minute throughout
    for i in range(MAX_SERIES):
        recent.record(f"r{i}", "p", 200, 0.5, 0.001)
    recent.record("r0", "p", 502, 0.25, None)  # a known pair, with the bucket full
    recent.record("late", "p", 200, 0.5, 0.002)  # a new pair: counted as other
    recent.record("later", "q", 200, 0.5, None)
    [(minute, bucket)] = recent.buckets()
    assert minute == 10 and len(bucket) == MAX_SERIES + 1
    first = bucket[("r0", "p")]
    assert (first.count, first.ok, first.timed, first.durations) == (2, 1, 1, [0.5, 0.25])
    other = bucket[OVERFLOW]
    assert (other.count, other.ok, other.timed, other.overheads) == (2, 2, 1, [0.002])
    assert ("late", "p") not in bucket
