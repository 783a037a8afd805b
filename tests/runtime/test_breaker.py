from __future__ import annotations

from engine.dsl.spec import BreakerPolicy
from engine.runtime.routing.breaker import Breakers


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


POLICY = BreakerPolicy(failures=3, cooldown=30)


def test_opens_after_consecutive_failures_then_lets_one_probe_through() -> None:
    clock = Clock()
    b = Breakers(clock)
    for _ in range(2):
        b.record("p", "upstream", POLICY)
    assert b.allow("p") and b.state("p") == "closed"
    b.record("p", "timeout", POLICY)
    assert b.state("p") == "open" and not b.allow("p")
    clock.now += 30
    assert b.allow("p")  # the probe
    assert not b.allow("p")  # only one at a time
    b.record("p", "upstream", POLICY)  # the probe failed: open again
    assert b.state("p") == "open"
    clock.now += 30
    assert b.allow("p")
    b.record("p", None, POLICY)  # the probe succeeded: closed
    assert b.state("p") == "closed" and b.allow("p") and b.allow("p")


def test_key_and_request_failures_do_not_trip_it() -> None:
    b = Breakers(Clock())
    for kind in ("rate_limited", "bad_key", "quota", "bad_request", "content_policy") * 3:
        b.record("p", kind, POLICY)
    assert b.state("p") == "closed"


def test_a_success_resets_the_count() -> None:
    b = Breakers(Clock())
    b.record("p", "upstream", POLICY)
    b.record("p", "upstream", POLICY)
    b.record("p", None, POLICY)
    b.record("p", "upstream", POLICY)
    b.record("p", "upstream", POLICY)
    assert b.state("p") == "closed"


def open_and_cool(b: Breakers, clock: Clock) -> None:
    for _ in range(3):
        b.record("p", "upstream", POLICY)
    clock.now += 30


def test_a_released_probe_frees_the_slot_for_the_next_one() -> None:
    clock = Clock()
    b = Breakers(clock)
    open_and_cool(b, clock)
    probe = b.allow("p", POLICY)
    assert probe is not None and probe.probe and not b.allow("p", POLICY)
    b.release(probe)  # cancelled: no outcome
    assert b.state("p") == "half_open" and b.allow("p", POLICY)


def test_a_lost_probe_expires_after_one_cooldown() -> None:
    clock = Clock()
    b = Breakers(clock)
    open_and_cool(b, clock)
    assert b.allow("p", POLICY)  # never settled
    clock.now += 29
    assert not b.allow("p", POLICY)
    clock.now += 1
    assert b.allow("p", POLICY)


def test_a_stale_release_does_not_free_someone_elses_probe() -> None:
    clock = Clock()
    b = Breakers(clock)
    early = b.allow("p", POLICY)  # taken while the circuit was closed
    open_and_cool(b, clock)
    probe = b.allow("p", POLICY)
    assert early is not None and probe is not None
    b.release(early)
    assert not b.allow("p", POLICY)  # the probe still holds the slot
    b.record("p", None, POLICY)
    b.release(probe)  # after an outcome: a no-op
    assert b.state("p") == "closed"


def test_a_closed_circuits_permit_is_shared_and_frees_no_probe_slot() -> None:
    """While closed every attempt gets the provider's one permit (nothing of its own to
    hold); a late release of it must not free the slot of a probe that came after."""
    clock = Clock()
    b = Breakers(clock)
    closed = b.allow("p", POLICY)
    assert closed is not None and not closed.probe and b.allow("p", POLICY) is closed
    for _ in range(3):
        b.record("p", "upstream", POLICY)
    clock.now += 30
    probe = b.allow("p", POLICY)
    assert probe is not None and probe.probe and probe is not closed
    b.release(closed)  # an attempt from before the circuit opened ends without an outcome
    assert b.allow("p", POLICY) is None  # the probe still holds the one slot
    b.release(probe)
    assert b.allow("p", POLICY) is not None
