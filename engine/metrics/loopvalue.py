"""A metric value without a lock, for one process serving on one event loop.

prometheus-client keeps every counter, gauge and histogram bucket in a `MutexValue`: each
`inc` takes a threading lock, for programs that count from several threads. pixgate counts
only on its event loop's thread (handlers, the service, storage callbacks; the threads it
starts for file and image work count nothing), about a dozen times per request; the scrape
reads the values from a worker thread, and reading a float is atomic. Without the lock the
same counts cost about 30,000 fewer instructions per small request (bench.instr). With
--workers every value lives in the shared files instead (gateway.enable_multiprocess).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import values


class LoopValue:
    """prometheus-client's value interface (values.MutexValue's), without its lock."""

    __slots__ = ("_exemplar", "_value")
    _multiprocess = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # MutexValue's signature
        self._value = 0.0
        self._exemplar: Any = None

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def set_exemplar(self, exemplar: Any) -> None:
        self._exemplar = exemplar

    def get(self) -> float:
        return self._value

    def get_exemplar(self) -> Any:
        return self._exemplar


def use_loop_values() -> None:
    """Metrics made from now on keep LoopValues (one process: not in multi-process mode)."""
    if values.ValueClass is values.MutexValue:
        values.ValueClass = LoopValue
