"""Client limits for one image request: admitted before any upstream call (a stream too, so
that a refusal is an HTTP error), released when the request ends however it ends."""

from __future__ import annotations

from aiohttp import web

from ..clients.admission import Refused, Ticket
from ..config.loader import ConfigSnapshot
from ..runtime.job import ImageJob
from .errors import ApiError
from .keys import ADMISSION, CLIENT, RATE_HEADERS

NO_TICKET = Ticket()
TYPES = {403: "permission_error", 429: "rate_limit_error"}


async def admit(request: web.Request, job: ImageJob, snapshot: ConfigSnapshot) -> Ticket:
    client = request.get(CLIENT)
    if client is None:
        return NO_TICKET
    model = job.model if job.model not in (None, "", "auto") else None
    route = (
        snapshot.resolve_model(model)
        if model is not None
        else snapshot.routes.defaults.get(job.task) or snapshot.routes.defaults.get("generate")
    )
    if route is None and model is not None:
        return NO_TICKET  # an unknown model: the router answers 404 for it
    names = tuple(n for n in (model, route) if n)
    pixels = job.size[0] * job.size[1] if job.size else None
    try:
        ticket = await request.app[ADMISSION].admit(client, names or ("auto",), job.n, pixels)
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
        request[RATE_HEADERS] = ticket.headers
    return ticket
