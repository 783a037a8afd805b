"""Per-provider circuit breakers: stop sending to a provider that keeps failing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..dsl.spec import BreakerPolicy

# Failure kinds that say something about the provider, not about one key or the request.
TRIPPING_KINDS = frozenset({"upstream", "timeout"})


@dataclass(slots=True)
class _Circuit:
    consecutive: int = 0
    open_until: float = 0.0
    probing: bool = False


class Breakers:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def allow(self, provider: str) -> bool:
        """Closed: yes. Open: no. Cooled off: yes for exactly one probe at a time."""
        circuit = self._circuits.get(provider)
        if circuit is None or circuit.open_until == 0.0:
            return True
        if self.clock() < circuit.open_until or circuit.probing:
            return False
        circuit.probing = True
        return True

    def is_open(self, provider: str) -> bool:
        circuit = self._circuits.get(provider)
        return circuit is not None and circuit.open_until > self.clock()

    def record(self, provider: str, kind: str | None, policy: BreakerPolicy) -> None:
        """kind None means success."""
        circuit = self._circuits.setdefault(provider, _Circuit())
        if kind is None:
            self._circuits[provider] = _Circuit()
            return
        if kind not in TRIPPING_KINDS:
            circuit.probing = False
            return
        circuit.consecutive += 1
        if circuit.probing or circuit.consecutive >= policy.failures:
            circuit.open_until = self.clock() + policy.cooldown
        circuit.probing = False

    def state(self, provider: str) -> str:
        circuit = self._circuits.get(provider)
        if circuit is None or circuit.open_until == 0.0:
            return "closed"
        return "open" if circuit.open_until > self.clock() else "half_open"
