"""Time spent waiting on upstreams, to tell the gateway's own cost apart from theirs."""

from __future__ import annotations

import time
from types import TracebackType


class WaitClock:
    """Wall time during which at least one upstream exchange was in flight, so the gateway can
    report its own overhead (`x-pixgate-overhead-ms`) apart from the upstream's.

    `with clock:` (or `with clock.waiting():`, the same) around each exchange; exchanges may
    overlap (n split into calls). The clock is its own context manager: entered once per
    upstream exchange, a generator-based one cost a generator and a wrapper object each time."""

    __slots__ = ("_inflight", "_since", "waited")

    def __init__(self) -> None:
        self._inflight = 0
        self._since = 0.0
        self.waited = 0.0

    def waiting(self) -> WaitClock:
        return self

    def __enter__(self) -> None:
        if self._inflight == 0:
            self._since = time.perf_counter()
        self._inflight += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            self.waited += time.perf_counter() - self._since
