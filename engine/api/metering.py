"""An image request's money: its estimate against the client's budget before the call, and
after it the actual cost charged and the usage counted (whatever the way the request ends:
an answer, an error, a background job, a stream)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from ..clients.spec import ClientSpec
from ..config.loader import ConfigSnapshot
from ..pricing import estimate, job_steps
from ..runtime.job import ImageJob
from ..runtime.request import Outcome, RequestInfo
from ..runtime.routing.failures import UpstreamFailure
from ..usage.budget import Hold
from ..usage.counters import Amounts, Row
from ..usage.meter import Meter
from .bearer import bearer_token
from .context import RequestContext
from .cost import outcome_cost, price_of

METER = web.AppKey("pixgate_meter", Meter)
ESTIMATE_SIZE = (1024, 1024)  # a request that names no size: priced as OpenAI's default
OTHER = "other"  # a name the config does not know (a relayed `any_model` id, a typo)


def route_of(snapshot: ConfigSnapshot, job: ImageJob) -> str | None:
    model = job.model if job.model not in (None, "", "auto") else None
    if model is not None:
        return snapshot.resolve_model(model)
    return snapshot.routes.defaults.get(job.task) or snapshot.routes.defaults.get("generate")


def estimate_of(snapshot: ConfigSnapshot, route: str, job: ImageJob) -> tuple[float, str]:
    """USD for the job at the dearest target it may reach (its route and fallbacks), so that
    a failover cannot spend past the budget; and how that was reckoned, for messages."""
    size = job.size or ESTIMATE_SIZE
    dearest, per_image = 0.0, 0.0
    for name in snapshot.chain(route):
        spec = snapshot.routes.routes.get(name) or snapshot.direct.get(name)
        for target in spec.targets if spec is not None else ():
            price = price_of(snapshot, name, target.provider, target.model)
            if price is None:
                continue
            cost = estimate(price, job.n, size, job.quality, job_steps(job.extra))
            if cost > dearest:
                dearest, per_image = cost, cost / job.n
    return dearest, f"{job.n} image{'s' if job.n != 1 else ''} at ${per_image:.4g}"


def who(request: web.Request, client: ClientSpec | None, relay: tuple[str, str] | None) -> str:
    """The usage name of the caller (`client`, `relay`: as client auth found them): its
    clients.yaml name, else one of four fixed names (keys from PIXGATE_API_KEYS are not told
    apart: bounded, and no key material)."""
    if client is not None:
        return str(client.name)
    if relay is not None:
        return "(relay)"
    if request.path.startswith("/admin"):
        return "(admin)"  # the panel's playground
    return "(api-keys)" if bearer_token(request) else "(anonymous)"


def row_of(snapshot: ConfigSnapshot, job: ImageJob, client: str, provider: str, model: str) -> Row:
    """Names from the config only, so that usage and metrics stay bounded (`client`: who)."""
    route = route_of(snapshot, job) or OTHER
    spec = snapshot.providers.get(provider)
    if spec is None:
        provider, model = ("-", "-") if provider == "-" else (OTHER, OTHER)
    elif model != "-" and model not in spec.models:
        model = OTHER
    return Row(client, route, provider, model)


def run(
    request: web.Request,
    ctx: RequestContext,
    job: ImageJob,
    info: RequestInfo,
    hold: Hold | None,
) -> Coroutine[Any, Any, Outcome]:
    """`service.run` on the request's snapshot, then the cost on the outcome, charged to the
    budget and counted. (It hands over metered's coroutine: no frame of its own while the
    request waits.)"""
    gateway, snapshot = ctx.gateway, ctx.snapshot
    # (the service's coroutine made last: nothing can raise after it)
    return metered(
        gateway.meter, who(request, ctx.client, ctx.relay), job, snapshot, info, hold,
        gateway.state.service.run(job, snapshot, info),
    )  # fmt: skip


async def metered(
    meter: Meter,
    client: str,
    job: ImageJob,
    snapshot: ConfigSnapshot,
    info: RequestInfo,
    hold: Hold | None,
    running: Awaitable[Outcome],
) -> Outcome:
    """`running` awaited, then its cost charged to the budget and its usage counted as
    `client`'s. A durable job is settled once, by whichever replica ends it (its journal's
    claim). (No closures in here: they would make its locals cells that a waiting request
    holds; `_settlement` makes them.)"""
    try:
        outcome = await running
    except asyncio.CancelledError:
        if info.journal is not None and info.journal.handed_over:
            # The job goes on elsewhere: the replica that ends it settles the reservation,
            # which stays as it is until then (not given back when this admission ends).
            if hold is not None:
                hold.settled = True
            raise
        # The upstream may still bill what it was doing: the estimate stays charged.
        if hold is not None:
            hold.settled = True
        row, amounts = _failure(snapshot, job, client, info, None)
        await _settle(info, _settlement(meter, row, amounts, None, 0.0))
        raise
    except Exception as exc:
        failure = exc if isinstance(exc, UpstreamFailure) else None
        row, amounts = _failure(snapshot, job, client, info, failure)
        # No images: the shipped providers bill no failure (docs/clients.md): given back.
        await _settle(info, _settlement(meter, row, amounts, hold, 0.0))
        raise
    outcome.cost_usd = outcome_cost(snapshot, job, outcome)
    cost = outcome.cost_usd or 0.0
    row = row_of(snapshot, job, client, outcome.provider, outcome.model)
    amounts = Amounts(images=len(outcome.data), cost_usd=cost, upstream_seconds=info.clock.waited)
    if hold is None and info.journal is None:
        meter.record(row, amounts)  # no budget to settle, no other replica: only counted
    else:
        await _settle(info, _settlement(meter, row, amounts, hold, cost))
    return outcome


def _settlement(
    meter: Meter, row: Row, amounts: Amounts, hold: Hold | None, cost: float
) -> Callable[[], Awaitable[None]]:
    """The request's settlement: `cost` charged against `hold` (when there is one to settle)
    and the usage counted. It holds only what it counts, not the request or its images."""

    async def settle() -> None:
        if hold is not None:
            await meter.budgets.settle(hold, cost)
        meter.record(row, amounts)

    return settle


def _settle(info: RequestInfo, settle: Callable[[], Awaitable[None]]) -> Awaitable[None]:
    """Settle the request (a durable job: once, whichever replica ends it; `settle` holds
    only what it counts, not the request or its images, as it may wait for Redis). It hands
    over the coroutine: no frame of its own."""
    return settle() if info.journal is None else info.journal.settle(settle)


def _failure(
    snapshot: ConfigSnapshot,
    job: ImageJob,
    client: str,
    info: RequestInfo,
    failure: UpstreamFailure | None,
) -> tuple[Row, Amounts]:
    """A failed request's usage row: under the provider that failed last."""
    provider = (failure.provider if failure is not None else None) or "-"
    amounts = Amounts(failures=1, upstream_seconds=info.clock.waited)
    return row_of(snapshot, job, client, provider, "-"), amounts
