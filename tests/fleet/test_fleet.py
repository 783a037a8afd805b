"""A fleet of three gateways behaves like one: what one replica learns, all of them use.

Every test drives real `pixgate serve` processes (A, B, C) with the official openai SDK; they
share one redis-server and one fake upstream, which counts what actually reached it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import openai
import pytest

from tests.fleet.conftest import Fleet, keys_of
from tests.fleet.upstream import FleetUpstream
from tests.gateway import get_json


def client(fleet: Fleet, name: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{fleet.replicas[name].url}/v1", api_key="unused", max_retries=0, timeout=30
    )


async def generate(fleet: Fleet, name: str, model: str) -> int:
    """One image request through replica `name`; the HTTP status the client saw."""
    async with client(fleet, name) as sdk:
        try:
            await sdk.images.generate(
                model=model, prompt="a fleet", size="256x256", response_format="b64_json"
            )
        except openai.APIStatusError as exc:
            return exc.status_code
        except openai.APIConnectionError:
            return 0  # the replica went away mid-request
    return 200


async def test_a_key_rejected_on_a_is_not_used_by_b_or_c(
    fleet: Fleet, upstream: FleetUpstream
) -> None:
    bad = keys_of("badkey")[0]
    upstream.set(bad, status=401)
    while upstream.requests[bad] == 0:  # the fleet-wide rotation reaches the bad key
        assert await generate(fleet, "A", "badkey") == 200  # failed over to the good key
    assert upstream.requests[bad] == 1
    for name in ("B", "C", "B", "C", "A", "B"):
        assert await generate(fleet, name, "badkey") == 200
    assert upstream.requests[bad] == 1
    row = fleet.replicas["C"].admin_keys("badkey")["keys"][0]
    assert row["state"] == "disabled" and row["changed_by"] == "A"
    assert bad not in str(fleet.replicas["C"].admin_keys("badkey"))


async def test_a_429_with_retry_after_cools_the_key_for_the_whole_fleet(
    fleet: Fleet, upstream: FleetUpstream
) -> None:
    limited = keys_of("ratelimit")[0]
    upstream.set(limited, status=429, retry_after="30")
    while upstream.requests[limited] == 0:
        assert await generate(fleet, "B", "ratelimit") == 200
    for name in ("A", "C", "A", "C"):
        assert await generate(fleet, name, "ratelimit") == 200
    assert upstream.requests[limited] == 1
    for name in ("A", "B", "C"):
        row = fleet.replicas[name].admin_keys("ratelimit")["keys"][0]
        assert row["state"] == "cooling_down" and 25 < row["cooldown_remaining_s"] <= 30
        assert row["changed_by"] == "B"


async def test_per_key_concurrency_holds_fleet_wide_under_fifty_concurrent_requests(
    fleet: Fleet, upstream: FleetUpstream
) -> None:
    keys = keys_of("conc")
    for key in keys:
        upstream.set(key, delay=0.05)
    names = ["A", "B", "C"] * 17
    statuses = await asyncio.gather(*(generate(fleet, n, "conc") for n in names[:50]))
    assert statuses == [200] * 50
    assert sum(upstream.requests[k] for k in keys) == 50
    assert [upstream.most_in_flight[k] for k in keys] == [2, 2]  # never 3, and the limit was hit


async def test_a_breaker_opened_by_a_is_open_on_b_and_one_probe_goes_out(
    fleet: Fleet, upstream: FleetUpstream
) -> None:
    (key,) = keys_of("breaker")
    upstream.set(key, status=500)
    assert [await generate(fleet, "A", "breaker") for _ in range(2)] == [502, 502]
    assert upstream.requests[key] == 2
    assert await generate(fleet, "B", "breaker") == 502  # circuit open: not sent
    assert upstream.requests[key] == 2
    assert fleet.replicas["C"].admin_keys("breaker")["circuit"] == "open"
    await asyncio.sleep(1.1)  # the 1 s cooldown: half-open
    upstream.set(key, delay=0.5)  # healthy again, and slow enough for all to overlap
    statuses = await asyncio.gather(*(generate(fleet, n, "breaker") for n in "ABCABC"))
    assert upstream.requests[key] == 3  # exactly one probe
    assert sorted(statuses) == [200, 502, 502, 502, 502, 502]
    # B learns of the close by pub/sub, a moment after the probe's answer: wait, bounded.
    end = time.monotonic() + 10
    while fleet.replicas["B"].admin_keys("breaker")["circuit"] != "closed":
        assert time.monotonic() < end, "B never saw the circuit closed"
        await asyncio.sleep(0.05)
    assert await generate(fleet, "C", "breaker") == 200


async def test_outage_of_redis_mid_load_fails_no_request_and_the_fleet_converges(
    fleet: Fleet, upstream: FleetUpstream
) -> None:
    first, second = keys_of("outage")
    for key in (first, second):
        upstream.set(key, delay=0.02)
    statuses: list[int] = []

    async def load(name: str, count: int) -> None:
        for _ in range(count):
            statuses.append(await generate(fleet, name, "outage"))

    runs = [asyncio.create_task(load(n, 10)) for n in "ABCABC"]
    await served(statuses, 10)
    fleet.redis.stop()
    await served(statuses, len(statuses) + 15)  # requests served while Redis is down
    ready = get_json(f"{fleet.replicas['A'].url}/health/ready")  # still ready: it serves
    assert ready == {"status": "ready", "state": "degraded"}
    fleet.redis.start()  # an empty Redis: what was shared is gone, as after a real restart
    await asyncio.gather(*runs)
    assert len(statuses) == 60 and set(statuses) == {200}
    end = time.monotonic() + 15
    while any(fleet.replicas[n].admin_keys("outage")["state"]["status"] != "ok" for n in "ABC"):
        assert time.monotonic() < end, "the fleet did not reconnect"
        await asyncio.sleep(0.1)
    assert all(fleet.replicas[n].admin_keys("outage")["state"]["outages"] >= 1 for n in "ABC")
    # Converged: a key rejected through C is skipped by A and B again.
    upstream.set(first, status=401)
    before = upstream.requests[first]
    while upstream.requests[first] == before:
        assert await generate(fleet, "C", "outage") == 200
    seen = upstream.requests[first]
    for name in "ABAB":
        assert await generate(fleet, name, "outage") == 200
    assert upstream.requests[first] == seen
    rows = {n: fleet.replicas[n].admin_keys("outage")["keys"] for n in "ABC"}
    assert all(r[0]["state"] == "disabled" and r[0]["in_flight"] == 0 for r in rows.values())


async def served(statuses: list[int], count: int) -> None:
    end = time.monotonic() + 60
    while len(statuses) < count:
        assert time.monotonic() < end, f"only {len(statuses)} of {count} requests answered"
        await asyncio.sleep(0.01)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
async def test_kill_9_of_a_replica_holding_leases_frees_its_keys_after_the_lease_ttl(
    fleet: Fleet, upstream: FleetUpstream
) -> None:
    (key,) = keys_of("lease")
    upstream.set(key, delay=30)  # D's request holds the only slot
    held = asyncio.create_task(generate(fleet, "D", "lease"))
    end = time.monotonic() + 10
    while upstream.in_flight[key] == 0:
        assert time.monotonic() < end
        await asyncio.sleep(0.02)
    assert fleet.replicas["A"].admin_keys("lease")["keys"][0]["in_flight"] == 1
    os.kill(fleet.replicas["D"].proc.pid, signal.SIGKILL)
    fleet.replicas["D"].proc.wait(timeout=5)
    assert await held != 200
    upstream.set(key, delay=0)
    # A waits for the slot; it comes back once the dead replica's lease expires (TTL 1 s),
    # not when D's request would have ended (30 s).
    assert await generate(fleet, "A", "lease") == 200
    assert upstream.requests[key] == 2
    assert fleet.replicas["B"].admin_keys("lease")["keys"][0]["in_flight"] == 0
