"""Key health: cooldowns (Retry-After, exponential), disabled keys, quotas, selection."""

from __future__ import annotations

import pytest

from engine.dsl.expressions import Expr
from engine.dsl.spec import AuthSpec, ErrorRule, ProviderPolicy, ProviderSpec
from engine.runtime.routing.failures import UpstreamFailure
from engine.runtime.routing.keys import KeyPools, NoHealthyKey, mask_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider(*keys: str) -> ProviderSpec:
    return ProviderSpec(
        id="p",
        title="p",
        base_url="http://x",
        auth=AuthSpec(keys=keys),
        models={},
        tasks={},
        errors=(ErrorRule(Expr("a"), "upstream"),),
        error_message=Expr("message"),
    )


POLICY = ProviderPolicy(quota_reset=600, bad_key_reprobe=3600, max_cooldown=60)


def fail(kind: str, retry_after: float | None = None) -> UpstreamFailure:
    return UpstreamFailure(kind, kind, retry_after=retry_after)


def test_round_robin_rotates_over_healthy_keys() -> None:
    pools, p = KeyPools(), provider("a", "b", "c")
    firsts = [pools.order(p, POLICY)[0] for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]


def test_retry_after_cools_the_key_for_that_long() -> None:
    clock = Clock()
    pools, p = KeyPools(clock), provider("a", "b")
    pools.failed("p", "a", fail("rate_limited", retry_after=7), POLICY)
    clock.now += 6.9
    assert all(pools.order(p, POLICY) == ["b"] for _ in range(3))
    clock.now += 0.2
    assert "a" in pools.order(p, POLICY)
    assert pools.report({"p": p})["p"][0]["state"] == "healthy"


def test_rate_limit_without_retry_after_backs_off_exponentially() -> None:
    clock = Clock()
    pools = KeyPools(clock)
    waits = []
    for _ in range(8):
        pools.failed("p", "a", fail("rate_limited"), POLICY)
        waits.append(pools.health("p", "a").until - clock.now)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]  # capped at max_cooldown
    pools.succeeded("p", "a")
    assert pools.health("p", "a").strikes == 0


def test_every_key_cooling_raises_with_the_soonest_return() -> None:
    clock = Clock()
    pools, p = KeyPools(clock), provider("a", "b")
    pools.failed("p", "a", fail("rate_limited", retry_after=30), POLICY)
    pools.failed("p", "b", fail("rate_limited", retry_after=12), POLICY)
    with pytest.raises(NoHealthyKey) as err:
        pools.order(p, POLICY)
    assert err.value.retry_after == pytest.approx(12)


def test_bad_key_leaves_rotation_until_the_reprobe() -> None:
    clock = Clock()
    pools, p = KeyPools(clock), provider("a", "b")
    pools.failed("p", "a", fail("bad_key"), POLICY)
    assert pools.report({"p": p})["p"][0]["state"] == "disabled"
    clock.now += 3599
    assert pools.order(p, POLICY) == ["b"]
    clock.now += 2
    assert "a" in pools.order(p, POLICY)  # one request probes it again
    assert pools.report({"p": p})["p"][0]["state"] == "probing"


def test_quota_lasts_until_the_configured_reset() -> None:
    clock = Clock()
    pools, p = KeyPools(clock), provider("a", "b")
    pools.failed("p", "a", fail("quota"), POLICY)
    clock.now += 599
    assert pools.order(p, POLICY) == ["b"]
    clock.now += 2
    assert "a" in pools.order(p, POLICY)


def test_other_kinds_leave_the_key_alone() -> None:
    pools, p = KeyPools(Clock()), provider("a")
    for kind in ("upstream", "timeout", "bad_request", "content_policy"):
        pools.failed("p", "a", fail(kind), POLICY)
    assert pools.order(p, POLICY) == ["a"]
    assert pools.health("p", "a").failures == 4


def test_least_recently_used_and_per_key_concurrency() -> None:
    clock = Clock()
    pools, p = KeyPools(clock), provider("a", "b", "c")
    lru = ProviderPolicy(key_selection="least_recently_used", max_concurrency_per_key=1)
    with pools.use("p", "a"):
        clock.now += 1
        with pools.use("p", "b"):
            order = pools.order(p, lru)
            assert order[0] == "c"  # never used and free
            assert order[-2:] == ["a", "b"]  # at the concurrency limit: only as a last resort
    assert pools.order(p, lru) == ["c", "a", "b"]


def test_state_survives_for_kept_keys_only() -> None:
    pools = KeyPools(Clock())
    pools.failed("p", "a", fail("bad_key"), POLICY)
    pools.failed("p", "b", fail("bad_key"), POLICY)
    pools.retain({"p": provider("a")})
    assert pools.health("p", "a").reason == "bad_key"
    assert pools.health("p", "b").reason is None


def test_masking_and_report_never_show_keys() -> None:
    key = "sk-abcdefghijklmnop9xQ"
    assert mask_key(key) == "sk-a…9xQ"
    assert mask_key("short") == "…"
    pools = KeyPools(Clock())
    report = pools.report({"p": provider(key)})
    assert key not in repr(report) and report["p"][0]["key"] == "sk-a…9xQ"


def test_the_rotation_found_once_follows_every_change_of_health() -> None:
    """Keys in rotation are found once per provider, not per request: every change of a
    key's health (a failure, a success of a resting key, a reprobe, a reload) and the exact
    end of a cooldown must still show at once."""
    clock = Clock()
    pools, p = KeyPools(clock), provider("a", "b")
    assert pools.order(p, POLICY) == ["a", "b"]  # found (and kept)
    pools.failed("p", "a", fail("rate_limited", retry_after=5), POLICY)
    assert pools.order(p, POLICY) == ["b"]
    clock.now += 5 - 1e-6
    assert pools.order(p, POLICY) == ["b"]
    clock.now += 1e-6  # the cooldown ends exactly now
    assert set(pools.order(p, POLICY)) == {"a", "b"}
    pools.failed("p", "b", fail("bad_key"), POLICY)
    assert pools.order(p, POLICY) == ["a"]
    pools.reprobe("p", "b")  # an operator's "try it again"
    assert set(pools.order(p, POLICY)) == {"a", "b"}
    pools.failed("p", "a", fail("quota"), POLICY)
    assert pools.order(p, POLICY) == ["b"]
    pools.succeeded("p", "a")  # another replica's grant of it succeeded
    assert set(pools.order(p, POLICY)) == {"a", "b"}
    pools.failed("p", "b", fail("bad_key"), POLICY)
    pools.retain({"p": provider("a")})  # a reload drops b, and its state with it
    assert set(pools.order(p, POLICY)) == {"a", "b"}
