"""Hold every API request to the process's bounds (runtime/lifecycle/overload.py): a place
among PIXGATE_MAX_IN_FLIGHT, and its body's bytes from PIXGATE_MAX_BUFFERED_BYTES before the
body is read. Beyond either, a 503 `overloaded` with Retry-After, and the connection closes
(its body is never read). A body declared over PIXGATE_MAX_BODY_BYTES gets its 413 here,
unread too: reading it would buffer up to that limit outside the byte budget. Health,
metrics, admin and files are not counted: an operator can still look at a saturated gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from ..metrics import GatewayMetrics
from ..runtime.lifecycle import overload
from .context import Gateway
from .errors import ApiError, overloaded, too_large

BOUNDED_PREFIX = "/v1/"
CLIENT_CHECK = 0.1  # seconds between checks that a client waiting for bytes is still there


class Refused(Exception):
    """The request is refused at a bound with `response` (its body unread)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def admit(request: web.Request, gateway: Gateway) -> Admitted | None:
    """The request's place among PIXGATE_MAX_IN_FLIGHT (None: its path is not bounded), or
    Refused. The caller closes it when the request ends, however it ends."""
    if not request.path.startswith(BOUNDED_PREFIX):
        return None
    limit = gateway.settings.max_body
    length = request.content_length
    if length is not None and length > limit:
        raise Refused(_unread(too_large(limit)))
    limits = gateway.limits
    try:
        limits.in_flight.enter()
    except overload.Overloaded as exc:
        raise Refused(_refusal(exc)) from None
    return Admitted(limits, _body_bytes(request, length, limit))


class Admitted:
    """An admitted request: its place in flight and its bytes (`charge`: the body's, and
    those its tasks take, found through overload.CURRENT)."""

    __slots__ = ("_limits", "_token", "body", "charge")

    def __init__(self, limits: overload.Limits, body: int) -> None:
        self._limits = limits
        self.body = body
        self.charge = limits.charge()
        self._token = overload.CURRENT.set(self.charge)

    def took_body(self) -> bool:
        """Reserve the body's bytes if they are free now (the common case)."""
        return self.charge.try_take(self.body)

    async def wait_for_body(self, request: web.Request) -> None:
        """Wait for the body's bytes; Refused when they are not free in time."""
        try:
            await _wait_for(request, self.charge, self.body)
        except overload.Overloaded as exc:
            raise Refused(_refusal(exc)) from None

    def close(self) -> None:
        self.charge.close()  # every reservation of the request, its tasks' too
        overload.CURRENT.reset(self._token)
        self._limits.in_flight.leave()


async def _wait_for(request: web.Request, charge: overload.Charge, size: int) -> None:
    """Wait for the body's bytes, but not for a client that has left meanwhile: aiohttp
    does not cancel a handler when its connection drops, and a departed client at the head
    of the queue would hold back every smaller request behind it until the wait ran out."""
    take = asyncio.ensure_future(charge.take(size))
    try:
        while True:
            done, _ = await asyncio.wait({take}, timeout=CLIENT_CHECK)
            if done:
                take.result()
                return
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the client left while its request waited for bytes")
    finally:
        take.cancel()  # a no-op once it is done; else the waiter leaves the queue


def _body_bytes(request: web.Request, length: int | None, limit: int) -> int:
    """What reading the body will hold: its declared `length` (at most `limit`, checked
    before); a body without one (chunked) counts as the largest allowed."""
    if not request.body_exists:
        return 0
    return limit if length is None else length


def _refusal(exc: overload.Overloaded) -> web.Response:
    return _unread(overloaded(exc))


def _unread(error: ApiError) -> web.Response:
    response = error.response()
    response.force_close()  # the body stays unread: the connection cannot carry on
    return response


def publish(limits: overload.Limits, metrics: GatewayMetrics) -> None:
    """The limits as gauges, and what is held against them, read when metrics are asked."""
    metrics.in_flight_limit.set(limits.in_flight.limit)
    metrics.buffered_bytes_limit.set(limits.buffered.limit)
    metrics.live(metrics.in_flight, lambda: limits.in_flight.count)
    metrics.live(metrics.buffered_bytes, lambda: limits.buffered.used)
    metrics.live(metrics.buffered_waiting, lambda: limits.buffered.waiting)
    limits.in_flight.on_refuse = limits.buffered.on_refuse = _count_refusal(metrics)


def _count_refusal(metrics: GatewayMetrics) -> Callable[[str], None]:
    def refused(reason: str) -> None:
        metrics.overloaded.labels(reason).inc()

    return refused
