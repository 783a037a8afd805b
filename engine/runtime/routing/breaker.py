"""Per-provider circuit breakers: stop sending to a provider that keeps failing.

Every `allow()` that says yes hands out a `Permit`, and the caller must settle it: `record()`
an outcome, or `release()` it when the attempt ends without one (cancelled by the deadline or
a departing client, a key pool with nothing healthy, a bug). An unsettled half-open probe
would otherwise keep the provider shut until a restart. As a last resort a probe's slot also
expires after one cooldown, so even a lost permit cannot lock a provider out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ...dsl.spec import BreakerPolicy

# Failure kinds that say something about the provider, not about one key or the request.
TRIPPING_KINDS = frozenset({"upstream", "timeout"})
DEFAULT_POLICY = BreakerPolicy()


class Permit:
    """Leave to send one attempt; `probe` when it is the half-open circuit's single probe."""

    __slots__ = ("probe", "provider")

    def __init__(self, provider: str, probe: bool) -> None:
        self.provider = provider
        self.probe = probe


@dataclass(slots=True)
class _Circuit:
    consecutive: int = 0
    open_until: float = 0.0
    probe: Permit | None = None  # the half-open probe in flight, if any
    probe_until: float = 0.0  # its slot expires here, settled or not


class Breakers:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}
        # A closed circuit's permit holds no slot (release() only ever frees a probe's), so
        # one per provider serves every attempt instead of a new one each.
        self._closed: dict[str, Permit] = {}

    def allow(self, provider: str, policy: BreakerPolicy = DEFAULT_POLICY) -> Permit | None:
        """Closed: a permit. Open: None. Cooled off: a permit for one probe at a time (a probe
        that has not settled within one cooldown no longer holds the slot)."""
        circuit = self._circuits.get(provider)
        if circuit is None or circuit.open_until == 0.0:
            permit = self._closed.get(provider)
            if permit is None:
                permit = self._closed[provider] = Permit(provider, probe=False)
            return permit
        now = self.clock()
        if now < circuit.open_until:
            return None
        if circuit.probe is not None and now < circuit.probe_until:
            return None
        permit = Permit(provider, probe=True)
        circuit.probe, circuit.probe_until = permit, now + policy.cooldown
        return permit

    def release(self, permit: Permit) -> None:
        """The attempt ended without an outcome: its probe slot (if it had one) is free
        again. A no-op once an outcome was recorded, so it belongs in a `finally`."""
        circuit = self._circuits.get(permit.provider)
        if circuit is not None and circuit.probe is permit:
            circuit.probe, circuit.probe_until = None, 0.0

    def is_open(self, provider: str) -> bool:
        circuit = self._circuits.get(provider)
        return circuit is not None and circuit.open_until > self.clock()

    def record(self, provider: str, kind: str | None, policy: BreakerPolicy) -> None:
        """kind None means success. Any outcome settles the running probe."""
        if kind is None:  # closed, nothing counted: the state of a provider never seen
            self._circuits.pop(provider, None)
            return
        circuit = self._circuits.setdefault(provider, _Circuit())
        probing = circuit.probe is not None
        circuit.probe, circuit.probe_until = None, 0.0
        if kind not in TRIPPING_KINDS:
            return
        circuit.consecutive += 1
        if probing or circuit.consecutive >= policy.failures:
            circuit.open_until = self.clock() + policy.cooldown

    def state(self, provider: str) -> str:
        circuit = self._circuits.get(provider)
        if circuit is None or circuit.open_until == 0.0:
            return "closed"
        return "open" if circuit.open_until > self.clock() else "half_open"
