"""Client limits and budget for one image request: admitted before any upstream call (a
stream too, so that a refusal is an HTTP error), released when the request ends however it
ends."""

from __future__ import annotations

from ..clients.admission import Refused, Ticket
from ..runtime.job import ImageJob
from ..usage.budget import OverBudget
from .context import RequestContext
from .errors import ApiError
from .metering import estimate_of, route_of

NO_TICKET = Ticket()
TYPES = {403: "permission_error", 429: "rate_limit_error"}


async def admit(ctx: RequestContext, job: ImageJob) -> Ticket:
    """The client's ticket for the job, on the request's snapshot (NO_TICKET for a caller
    without a clients.yaml name)."""
    client = ctx.client
    if client is None:
        return NO_TICKET
    snapshot = ctx.snapshot
    model = job.model if job.model not in (None, "", "auto") else None
    route = route_of(snapshot, job)
    if route is None and model is not None:
        return NO_TICKET  # an unknown model: the router answers 404 for it
    names = tuple(n for n in (model, route) if n)
    pixels = job.size[0] * job.size[1] if job.size else None
    try:
        ticket = await ctx.gateway.admission.admit(client, names or ("auto",), job.n, pixels)
    except Refused as exc:
        raise ApiError(
            exc.status,
            exc.message,
            type=TYPES.get(exc.status, "invalid_request_error"),
            param=exc.param,
            code=exc.code,
            headers=exc.headers,
        ) from None
    if ticket.headers:
        ctx.rate_headers = ticket.headers
    if client.budget and route is not None:
        cost, what = estimate_of(snapshot, route, job)
        ticket.budgets = ctx.gateway.meter.budgets
        try:
            ticket.hold = await ticket.budgets.reserve(client.name, client.budget, cost, what)
        except OverBudget as exc:
            await ticket.release()
            raise ApiError(
                429,
                exc.message,
                type="insufficient_quota",
                code="insufficient_quota",
                # the openai SDKs honour x-should-retry: retrying cannot help before the reset
                headers={
                    "Retry-After": str(max(1, round(exc.retry_after))),
                    "x-should-retry": "false",
                },
            ) from None
    return ticket
