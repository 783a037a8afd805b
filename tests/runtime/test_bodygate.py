"""The large-body gate: one slot per request, shared by its tasks, always given back."""

from __future__ import annotations

import asyncio

import pytest

from engine.runtime.lifecycle import bodygate
from engine.runtime.lifecycle.bodygate import LARGE_BODY, BodyGate, hold_for


async def test_a_second_request_waits_for_the_first_to_finish() -> None:
    gate = BodyGate(1)
    first, second = gate.ticket(), gate.ticket()
    await first.acquire()
    await first.acquire()  # idempotent: still one slot
    waiting = asyncio.ensure_future(second.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done() and not second.held
    first.release()
    await asyncio.wait_for(waiting, 1)
    assert second.held and not first.held
    second.release()
    third = gate.ticket()
    await asyncio.wait_for(third.acquire(), 1)  # the slot came back
    third.release()


async def test_tasks_of_one_request_share_its_ticket() -> None:
    gate = BodyGate(1)
    ticket = gate.ticket()
    token = bodygate.CURRENT.set(ticket)
    try:
        # n > 1 calls each meet a large body: one slot, no self-deadlock
        await asyncio.wait_for(asyncio.gather(*(hold_for(LARGE_BODY) for _ in range(3))), 1)
        assert ticket.held
    finally:
        ticket.release()
        bodygate.CURRENT.reset(token)


async def test_small_bodies_and_no_ticket_take_nothing() -> None:
    gate = BodyGate(1)
    ticket = gate.ticket()
    token = bodygate.CURRENT.set(ticket)
    try:
        await hold_for(LARGE_BODY - 1)
        assert not ticket.held
    finally:
        bodygate.CURRENT.reset(token)
    await hold_for(10 * LARGE_BODY)  # outside a request: nothing to hold, nothing waits


async def test_a_request_cancelled_while_waiting_gives_nothing_back_twice() -> None:
    gate = BodyGate(1)
    holder, waiter = gate.ticket(), gate.ticket()
    await holder.acquire()
    pending = asyncio.ensure_future(waiter.acquire())
    await asyncio.sleep(0.01)
    pending.cancel()
    waiter.release()  # the request ends while its claim is still pending
    holder.release()
    tickets = [gate.ticket() for _ in range(2)]
    await asyncio.wait_for(tickets[0].acquire(), 1)
    late = asyncio.ensure_future(tickets[1].acquire())
    await asyncio.sleep(0.01)
    assert not late.done()  # still one slot: the cancelled claim did not leak a second one
    tickets[0].release()
    await asyncio.wait_for(late, 1)
    tickets[1].release()


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BodyGate(0)
