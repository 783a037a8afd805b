"""Counter increments and histogram observations, summed on the event loop until metrics are
read.

prometheus-client's `Counter.inc` checks its argument and calls its value, about 4,000
instructions; `Histogram.observe` walks the buckets in Python and adds to two values, about
5,000. A request moves about ten of them. Here an increment is one dict update and an
observation one bisect, and `flush` hands the sums to prometheus-client before metrics are
read (a scrape; with --workers at the end of every request too), so a scrape shows the same
counts, buckets and sums as if each had been handed over at once.
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import Counter, Histogram


class _Observed:
    """One histogram child's observations since the last flush: a count per bucket (the
    first bound at or above the value, as `Histogram.observe` picks) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, child: Histogram) -> None:
        # prometheus-client's own bounds (+Inf last) and values: a histogram child has no
        # public way to add a count to one bucket.
        self.bounds: list[float] = child._upper_bounds
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def hand_over(self, child: Histogram) -> None:
        child._sum.inc(self.total)
        for bucket, count in zip(child._buckets, self.counts, strict=True):
            if count:
                bucket.inc(count)


class Pending:
    """What the event loop counted since the last `flush`, per metric child."""

    __slots__ = ("_counts", "_observed", "_rows")

    def __init__(self) -> None:
        self._counts: dict[Counter, float] = {}
        self._observed: dict[Histogram, _Observed] = {}
        self._rows: dict[tuple[Counter, ...], list[float]] = {}

    def add(self, child: Counter, amount: float) -> None:
        counts = self._counts
        counts[child] = counts.get(child, 0.0) + amount

    def row(self, children: tuple[Counter, ...]) -> list[float]:
        """The pending sums of counters that move together (a request's, a usage row's),
        one per child: the caller adds to them (a sum still 0 at the flush changes none)."""
        sums = self._rows.get(children)
        if sums is None:
            sums = self._rows[children] = [0.0] * len(children)
        return sums

    def observe(self, child: Histogram, amount: float) -> None:
        observed = self._observed.get(child)
        if observed is None:
            observed = self._observed[child] = _Observed(child)
        observed.counts[bisect_left(observed.bounds, amount)] += 1
        observed.total += amount

    def flush(self) -> None:
        """Hand every sum to its child (on the event loop's thread)."""
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        rows, self._rows = self._rows, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        for children, sums in rows.items():
            for counter, amount in zip(children, sums, strict=True):
                if amount:
                    counter.inc(amount)
        for histogram, observations in observed.items():
            observations.hand_over(histogram)
