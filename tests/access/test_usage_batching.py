"""Usage counts are summed in the gateway and written once per delay, not once per request:
many requests' counts reach the store in one call, and a query or shutdown sends what is
pending first."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence

from engine.state import MemoryState
from engine.usage.counters import Amounts, Row, Usage, day_name
from engine.usage.windows import day_of

ROW = Row("alice", "fast", "openai", "gpt-image-1")


class CountingStore(MemoryState):
    """Memory state that remembers every add_usage call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, float]] = []

    async def add_usage(
        self, name: str, amounts: dict[str, float], ttl: float | None = None
    ) -> dict[str, float]:
        self.calls.append(dict(amounts))
        return await super().add_usage(name, amounts, ttl)


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def requests_field(calls: Sequence[dict[str, float]]) -> float:
    return sum(c.get("alice\tfast\topenai\tgpt-image-1\trequests", 0.0) for c in calls)


async def test_counts_of_many_requests_go_out_in_one_write_after_the_delay() -> None:
    store = CountingStore()
    usage = Usage(store, delay=0.05)
    for _ in range(5):  # requests finishing on different turns of the loop
        usage.record(ROW, Amounts(images=1))
        await turns(3)
    assert store.calls == []  # nothing written per request
    end = time.monotonic() + 5
    while not store.calls:
        assert time.monotonic() < end, "the counts were never sent"
        await asyncio.sleep(0.01)
    assert len(store.calls) == 1 and requests_field(store.calls) == 5
    totals = await store.get_usage(day_name(day_of(time.time())))
    assert totals["alice\tfast\topenai\tgpt-image-1\timages"] == 5


async def test_a_query_sends_what_is_pending_first() -> None:
    store = CountingStore()
    usage = Usage(store, delay=3600)  # never due during the test
    usage.record(ROW, Amounts(images=2))
    usage.record(ROW, Amounts(failures=1))
    day = dt.datetime.now(dt.UTC).date()
    rows = await usage.query(day, day, ("client",))
    assert rows == [
        {
            "client": "alice",
            "requests": 2,
            "images": 2,
            "failures": 1,
            "cost_usd": 0.0,
            "upstream_seconds": 0.0,
        }
    ]
    assert len(store.calls) == 1
    await usage.flush()  # nothing left: no empty write
    assert len(store.calls) == 1


async def test_pending_counts_are_rounded_per_request_and_zero_sums_not_sent() -> None:
    store = CountingStore()
    usage = Usage(store, delay=3600)
    other = Row("bob", "fast", "openai", "gpt-image-1")
    for _ in range(3):  # 0.4 micro-USD rounds to 0 each time: never a field
        usage.record(ROW, Amounts(images=1, cost_usd=0.0000004, upstream_seconds=0.0000004))
    usage.record(other, Amounts(failures=1, cost_usd=0.0000016, upstream_seconds=1.5))
    await usage.flush()
    prefix, bob = "alice\tfast\topenai\tgpt-image-1\t", "bob\tfast\topenai\tgpt-image-1\t"
    assert store.calls == [
        {
            prefix + "requests": 3,
            prefix + "images": 3,
            bob + "requests": 1,
            bob + "failures": 1,
            bob + "cost_micro_usd": 2,
            bob + "upstream_seconds": 1.5,
        }
    ]
