"""Time spent waiting on upstreams, to tell the gateway's own cost apart from theirs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class WaitClock:
    """Wall time during which at least one upstream exchange was in flight, so the gateway can
    report its own overhead (`x-pixgate-overhead-ms`) apart from the upstream's."""

    __slots__ = ("_inflight", "_since", "waited")

    def __init__(self) -> None:
        self._inflight = 0
        self._since = 0.0
        self.waited = 0.0

    @contextmanager
    def waiting(self) -> Iterator[None]:
        if self._inflight == 0:
            self._since = time.perf_counter()
        self._inflight += 1
        try:
            yield
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self.waited += time.perf_counter() - self._since
