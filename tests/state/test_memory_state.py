"""The memory backend keeps the same contract as Redis within one process."""

from __future__ import annotations

import pytest

from engine.dsl.spec import BreakerPolicy, ProviderPolicy
from engine.runtime.routing.breaker import Breakers
from engine.state import RELEASED, Denied, MemoryState
from tests.state.conftest import provider


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_max_concurrency_per_key_is_a_hard_limit() -> None:
    state, p = MemoryState(), provider("k1", "k2")
    policy = ProviderPolicy(max_concurrency_per_key=1)
    held = [await state.acquire(p, policy), await state.acquire(p, policy)]
    assert {g.key for g in held} == {"k1", "k2"}
    with pytest.raises(Denied) as caught:
        await state.acquire(p, policy)
    assert caught.value.why == "busy"
    await state.settle(held[0], policy, RELEASED)
    assert (await state.acquire(p, policy)).key == held[0].key


async def test_a_probe_that_finds_no_healthy_key_gives_the_slot_back() -> None:
    clock = Clock()
    state = MemoryState(breakers=Breakers(clock))
    policy = ProviderPolicy(breaker=BreakerPolicy(failures=1, cooldown=10))
    p = provider("k1")
    grant = await state.acquire(p, policy)
    await state.settle(grant, policy, "upstream")
    clock.now += 10  # half-open
    probe = await state.acquire(p, policy)
    assert probe.probe
    await state.settle(probe, policy, "bad_key")  # not a provider failure: slot freed
    with pytest.raises(Denied) as caught:
        await state.acquire(p, policy)  # the key is out, so the probe is handed back
    assert caught.value.why == "no_key"
    assert state.breakers.allow("p", policy.breaker) is not None


async def test_hooks_count_and_keep_job_records() -> None:
    state = MemoryState()
    assert [await state.hit("c", 60) for _ in range(3)] == [1, 2, 3]
    assert await state.add_usage("c", {"images": 2}) == {"images": 2}
    assert await state.add_usage("c", {"images": 1}) == {"images": 3}
    await state.put_job("j", {"status": "queued"}, ttl=60)
    assert await state.get_job("j") == {"status": "queued"}
    await state.put_job("gone", {}, ttl=-1)
    assert await state.get_job("gone") is None


def test_memory_state_answers_without_a_wait() -> None:
    """In-process state never declines the hot path's acquire_nowait / settle_nowait."""
    state, p = MemoryState(), provider("k1")
    policy = ProviderPolicy(max_concurrency_per_key=1)
    grant = state.acquire_nowait(p, policy)
    assert grant.key == "k1" and state.keys.health("p", "k1").in_flight == 1
    with pytest.raises(Denied) as caught:
        state.acquire_nowait(p, policy)
    assert caught.value.why == "busy"
    assert state.settle_nowait(grant, policy, None)
    assert state.keys.health("p", "k1").in_flight == 0
    assert state.keys.health("p", "k1").successes == 1
