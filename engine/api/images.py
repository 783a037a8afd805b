"""POST /v1/images/generations, /edits, /variations and /blend."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from .. import rawtext
from ..jobs.manager import Progress, Release, Work
from ..pricing import usd
from ..runtime.calls.checkpoint import Journal
from ..runtime.calls.executor import ProgressFn
from ..runtime.images.inputs import InputContext, InputError, resolve
from ..runtime.job import ImageJob
from ..runtime.lifecycle import bodygate
from ..runtime.lifecycle.overload import Overloaded
from ..runtime.request import NoUpstream, Outcome, RequestInfo
from ..runtime.routing.failures import UpstreamFailure
from ..runtime.routing.router import UnknownModel
from ..settings import Settings
from . import imagestream, jobs, metering, params
from .admission import admit
from .context import RequestContext, context
from .errors import ApiError, bad_request, from_failure, overloaded
from .forms import ImageForm, read_image_form
from .jobrequest import request_record
from .jsonio import json_response
from .protocolerrors import JsonErrorHandler, socket_address

KNOWN_FIELDS = frozenset(
    {
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "style",
        "response_format",
        "output_format",
        "background",
        "user",
        "seed",
        "negative_prompt",
        "stream",
        "partial_images",
    }
)


async def generations(request: web.Request) -> web.StreamResponse:
    return await _generation(request, await params.read_json(request))


def _generation(request: web.Request, body: dict[str, Any]) -> Awaitable[web.StreamResponse]:
    """The body's job, streamed or answered; raises for bad fields before its coroutine is
    made. (The waiting `generations` frame keeps the request only, not the parsed body.)"""
    stream = imagestream.options(body)
    job = job_from(body, "generate", prompt=params.prompt(body))
    if stream is not None and not jobs.wants_async(request):
        return imagestream.respond(request, job, stream, "image_generation")
    return respond(request, job)


async def edits(request: web.Request) -> web.StreamResponse:
    form = await read_image_form(request)
    stream = imagestream.options(form.fields)
    if not form.images:
        raise bad_request(
            "Missing required parameter: 'image'.", "image", "missing_required_parameter"
        )
    job = job_from(form.fields, "edit", prompt=params.prompt(form.fields))
    await attach_images(request, job, form)
    if stream is not None and not jobs.wants_async(request):
        return await imagestream.respond(request, job, stream, "image_edit")
    return await respond(request, job)


async def variations(request: web.Request) -> web.Response:
    form = await read_image_form(request)
    if len(form.images) != 1:
        raise bad_request("Send exactly one 'image' to vary.", "image")
    job = job_from(form.fields, "variation", prompt=str(form.fields.get("prompt") or ""))
    await attach_images(request, job, form)
    return await respond(request, job)


async def blend(request: web.Request) -> web.StreamResponse:
    form = await read_image_form(request)
    stream = imagestream.options(form.fields)
    if len(form.images) < 2:
        raise bad_request("Blending needs at least two images in 'images'.", "images")
    job = job_from(form.fields, "blend", prompt=params.prompt(form.fields))
    await attach_images(request, job, form)
    if stream is not None and not jobs.wants_async(
        request
    ):  # a blend is an edit of several images: image_edit.* events
        return await imagestream.respond(request, job, stream, "image_edit")
    return await respond(request, job)


def job_from(body: dict[str, Any], task: str, *, prompt: str) -> ImageJob:
    """The canonical job from OpenAI's fields; anything else goes to `extra` for templates."""
    return ImageJob(
        task=task,
        prompt=prompt,
        model=params.text(body, "model"),
        n=params.n(body),
        size=params.size(body),
        quality=params.text(body, "quality"),
        style=params.text(body, "style"),
        seed=params.seed(body),
        negative_prompt=params.text(body, "negative_prompt"),
        response_format=params.choice(body, "response_format", ("url", "b64_json")),
        output_format=params.choice(body, "output_format", ("png", "jpeg", "webp"), "png")
        if body.get("output_format") is not None
        else None,
        background=params.text(body, "background"),
        user=params.text(body, "user"),
        # fields OpenAI does not define (a request seldom has any)
        extra={}
        if KNOWN_FIELDS.issuperset(body)
        else {k: v for k, v in body.items() if k not in KNOWN_FIELDS},
    )


async def attach_images(request: web.Request, job: ImageJob, form: ImageForm) -> None:
    check_counts(request, job, len(form.images))
    sources = list(form.images)
    if form.mask is not None:
        sources.append(form.mask)
    try:
        images = await resolve(sources, input_context(request))
    except InputError as exc:
        raise bad_request(str(exc), exc.param) from None
    except Overloaded as exc:  # no bytes free for a fetched image
        raise overloaded(exc) from None
    if form.mask is not None:
        job.mask = images.pop()
    job.images = images


def check_counts(request: web.Request, job: ImageJob, images: int) -> None:
    """A request no target can take for its n or number of images is refused before any of
    its image URLs is fetched (a blend of 100 URLs makes no request at all)."""
    ctx = context(request)
    relay = ctx.relay
    try:
        ctx.gateway.state.service.check_counts(
            job, ctx.snapshot, relay[0] if relay else None, images
        )
    except (UnknownModel, NoUpstream) as exc:
        raise service_error(ctx, exc) from None


def input_context(request: web.Request) -> InputContext:
    gateway = context(request).gateway
    settings, state = gateway.settings, gateway.state
    own = tuple(dict.fromkeys(u for u in (settings.public_url, public_url(request)) if u))
    # Inputs get a public URL (the image bed) when the gateway's own URL is public, or when
    # the store hands out URLs of its own (public or presigned).
    publish = settings.public_url or (own[-1] if state.storage.direct_urls else None)
    return InputContext(state.fetch_session, state.storage, settings.fetch_policy, own, publish)


def respond(request: web.Request, job: ImageJob) -> Awaitable[web.Response]:
    """Now, or as a background job (Prefer: respond-async); once per Idempotency-Key. (It
    hands over the coroutine that answers: no frame of its own while the request waits.)"""
    now = functools.partial(_now, request, job)
    return jobs.respond(request, job, now, functools.partial(detached, request, job))


async def _now(request: web.Request, job: ImageJob) -> web.Response:
    outcome = await run_job(request, job)
    return json_response(images_response(outcome), headers=outcome_headers(outcome))


async def detached(request: web.Request, job: ImageJob) -> tuple[Work, Release, dict[str, Any]]:
    """Admit the job now (a refusal is the request's error); the returned work runs it later,
    after the response, on this request's snapshot."""
    ctx = context(request)
    state = ctx.gateway.state
    ctx.model = job.model or "auto"
    ticket = await admit(ctx, job)
    info = request_info(request, ctx)

    async def work(progress: Progress, journal: Journal) -> tuple[dict[str, Any], dict[str, Any]]:
        info.on_progress = progress
        info.journal = journal  # checkpoints: another replica can go on if this one dies
        try:
            with bodygate.own_ticket(state.body_gate):  # the request's went with its 202
                outcome = await metering.run(request, ctx, job, info, ticket.hold)
        except (UnknownModel, NoUpstream, UpstreamFailure) as exc:
            raise service_error(ctx, exc) from None
        body: dict[str, Any] = rawtext.plain(images_response(outcome))
        # plain JSON: the record goes to the shared state; the cost is x-pixgate-cost-usd's
        cost = usd(outcome.cost_usd) if outcome.cost_usd is not None else None
        return body, {"cost_usd": cost}

    return work, ticket.release, request_record(request, ctx, job, info.public_url, ticket.hold)


async def run_job(
    request: web.Request, job: ImageJob, on_progress: ProgressFn | None = None
) -> Outcome:
    """Run a job on the request's snapshot; the service's errors become ApiErrors.
    `on_progress` goes to RequestInfo (named, not **hooks: no dict while the job waits)."""
    ctx = context(request)  # its snapshot: one config for the whole request
    ctx.model = job.model or "auto"
    ticket = await admit(ctx, job)
    info = request_info(request, ctx, on_progress=on_progress)
    try:
        outcome = await metering.run(request, ctx, job, info, ticket.hold)
    except (UnknownModel, NoUpstream, UpstreamFailure) as exc:
        raise service_error(ctx, exc) from None
    finally:
        await ticket.release()
    ctx.provider = outcome.provider
    return outcome


def request_info(request: web.Request, ctx: RequestContext, **streaming: Any) -> RequestInfo:
    gateway = ctx.gateway
    settings = gateway.settings
    local = _local_address(request)
    info = RequestInfo(
        ctx.id,
        settings.public_url or _request_base(request, settings, local),
        _self_url(gateway.state.internal_url, settings, local),
        relay=ctx.relay,
        client=client.name if (client := ctx.client) is not None else None,
        **streaming,
    )
    ctx.wait_clock = info.clock  # the access log subtracts upstream waiting from it
    return info


def service_error(
    ctx: RequestContext | None, exc: UnknownModel | NoUpstream | UpstreamFailure
) -> ApiError:
    """The client's error for what ImageService.run raised (`ctx`: where to note the
    provider for the access log, when there is one)."""
    if isinstance(exc, UnknownModel):
        return ApiError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, NoUpstream):
        return ApiError(
            exc.status,
            str(exc),
            param=exc.param,
            type="invalid_request_error" if exc.status == 400 else "server_error",
            code=None if exc.status == 400 else "no_upstream_available",
        )
    if ctx is not None:
        ctx.provider = exc.provider or "-"
    return from_failure(exc)


def images_response(outcome: Outcome) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    for item in outcome.data:
        entry: dict[str, Any] = dict(item)
        if outcome.revised_prompt:
            entry["revised_prompt"] = outcome.revised_prompt
        data.append(entry)
    body: dict[str, Any] = {"created": int(time.time()), "data": data}
    if is_image_usage(outcome.usage):
        body["usage"] = outcome.usage
    return body


def is_image_usage(usage: Any) -> bool:
    """Only pass usage on when it has OpenAI's ImageGenUsage shape."""
    return (
        isinstance(usage, dict)
        and all(
            isinstance(usage.get(k), int) for k in ("input_tokens", "output_tokens", "total_tokens")
        )
        and isinstance(usage.get("input_tokens_details"), dict)
    )


def outcome_headers(outcome: Outcome) -> dict[str, str]:
    headers = {
        "x-pixgate-provider": outcome.provider,
        "x-pixgate-route": outcome.route,
        "x-pixgate-attempts": str(outcome.attempts),
    }
    if outcome.failed:
        headers["x-pixgate-failed"] = str(outcome.failed)
    if outcome.size is not None and outcome.size_adjusted:
        headers["x-pixgate-size"] = outcome.size.text
    if outcome.cost_usd is not None:
        headers["x-pixgate-cost-usd"] = usd(outcome.cost_usd)
    return headers


def public_url(request: web.Request) -> str:
    """The base of handed-out /files URLs. A Host header is the client's word: it counts only
    when allowed (PIXGATE_ALLOWED_HOSTS, else the loopback names of the port the request came
    in on); otherwise the address the connection arrived at."""
    settings = context(request).gateway.settings
    return settings.public_url or _request_base(request, settings, _local_address(request))


def _request_base(request: web.Request, settings: Settings, local: tuple[str, int] | None) -> str:
    """public_url without PIXGATE_PUBLIC_URL: from the Host header or the connection."""
    host = request.host
    allowed = settings.allowed_hosts or (_loopback_names(local[1]) if local else ())
    if host.lower() in allowed:
        return f"{request.scheme}://{host}"
    if local is None:
        return f"http://127.0.0.1:{settings.port}"
    address, port = local
    return (
        f"{request.scheme}://[{address}]:{port}"
        if ":" in address
        else (f"{request.scheme}://{address}:{port}")
    )


@functools.lru_cache(maxsize=16)
def _loopback_names(port: int) -> tuple[str, ...]:
    return (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}")


def _local_address(request: web.Request) -> tuple[str, int] | None:
    """The (host, port) the request's connection arrived at."""
    protocol = request.protocol
    if isinstance(protocol, JsonErrorHandler):  # every runner of the gateway's app
        return protocol.local_address  # read once per connection
    transport = request.transport
    return socket_address(transport.get_extra_info("sockname")) if transport else None


def _self_url(internal: str | None, settings: Settings, local: tuple[str, int] | None) -> str:
    """Where this gateway can reach itself: its private port (`internal`), else the socket
    the request came in on (`local`)."""
    if internal is not None:
        return internal
    if local is not None:
        host, port = local
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return f"http://127.0.0.1:{settings.port}"
