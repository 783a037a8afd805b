"""POST /v1/chat/completions: images from a chat conversation (docs/chat.md).

The latest user message is the request (its text the prompt, its images the inputs); the
answer is an assistant message of markdown images. With `stream: true` it is OpenAI's chunk
stream, with keep-alive comments while the upstream works and its progress as
`reasoning_content`, which chat clients show as "thinking".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import web

from ..config.loader import ConfigSnapshot
from ..dsl.sizes import size_for_ratio
from ..dsl.spec import RouteSpec
from ..runtime.calls.executor import ProgressFn
from ..runtime.images.inputs import InputError, resolve
from ..runtime.job import ImageJob, InputImage
from ..runtime.lifecycle.overload import Overloaded
from ..runtime.request import Outcome
from ..runtime.routing.router import UnknownModel, serves
from . import chat_reply, params, sse
from .chat_messages import ChatInput, FoundImage, choose_task, parse_chat
from .context import context
from .errors import ApiError, bad_request, overloaded
from .images import check_counts, input_context, job_from, outcome_headers, run_job
from .jsonio import json_response

log = logging.getLogger("pixgate.chat")

# Seconds between keep-alive comments on a stream (read per request; tests shrink it).
KEEPALIVE_SECONDS = sse.KEEPALIVE_SECONDS

# Chat parameters that mean nothing to an image model; every other field goes to the job like
# on the image endpoints (`size`, `n`, `seed`, ... and provider extras such as `delay`).
CHAT_ONLY_FIELDS = frozenset(
    {
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "modalities",
        "audio",
        "prediction",
        "reasoning_effort",
        "reasoning",
        "verbosity",
        "web_search_options",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)


async def completions(request: web.Request) -> web.StreamResponse:
    body = await params.read_json(request)
    streaming = params.flag(body, "stream")
    include_usage = streaming and _include_usage(body)
    chat = parse_chat(body.get("messages"))
    model = params.text(body, "model")
    ctx = context(request)
    ctx.model = model or "auto"
    snapshot = ctx.snapshot
    relay = relayed[0] if (relayed := ctx.relay) is not None else None
    route = _route(request, snapshot, model, "generate")
    context_edit = (
        not chat.images
        and chat.context is not None
        and route.chat_context_edit
        and can_serve(snapshot, _route(request, snapshot, model, "edit"), "edit", relay)
    )
    task, found = choose_task(chat, context_edit)
    if task != "generate" and not can_serve(
        snapshot, _route(request, snapshot, model, task), task, relay, usable_only=False
    ):
        raise bad_request(f"model '{model or route.name}' does not support {task}", "model")
    job = job_from(_image_fields(body, route), task, prompt=chat.prompt)
    if job.size is None and chat.ratio is not None:
        job.size = size_for_ratio(chat.ratio)
    if found:
        check_counts(request, job, len(found))
    job.images = await _resolve(request, found)
    name = model or route.name
    headers = {"x-pixgate-task": task}
    if streaming:
        first = chat_reply.start_line(task, name, len(found), context=not chat.images)
        return await _stream(request, job, chat, name, first, headers, route, include_usage)
    outcome = await run(request, job)
    content = "".join(chat_reply.content_parts(outcome))
    answer = chat_reply.completion(
        chat_reply.completion_id(),
        int(time.time()),
        name,
        content,
        chat_reply.usage(chat.prompt, content),
    )
    return json_response(answer, headers={**outcome_headers(outcome), **headers})


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object.", "stream_options")
    value = options.get("include_usage")
    if value is not None and not isinstance(value, bool):
        raise bad_request(
            "'stream_options.include_usage' must be a boolean.", "stream_options.include_usage"
        )
    return bool(value)


def _route(
    request: web.Request, snapshot: ConfigSnapshot, model: str | None, task: str
) -> RouteSpec:
    try:
        router = context(request).gateway.state.router
        return snapshot.route(router.route_name(snapshot, model, task))
    except UnknownModel as exc:
        raise ApiError(404, str(exc), param="model", code="model_not_found") from None


def can_serve(
    snapshot: ConfigSnapshot,
    route: RouteSpec,
    task: str,
    relay: str | None = None,
    *,
    usable_only: bool = True,
) -> bool:
    """Whether the route (or one of its fallbacks) has a target whose model and provider do
    `task`. `usable_only` also asks for one that can be used now (keys, demo on, relay).
    Read-only: unlike Router.plan it moves no round-robin cursor."""
    for name in snapshot.chain(route.name):
        current = snapshot.route(name)
        for target in current.targets:
            provider = snapshot.providers.get(target.provider)
            model = provider.models.get(target.model) if provider else None
            if provider is None or model is None:
                continue
            if usable_only and (
                target.weight <= 0
                or (relay is not None and provider.id != relay)
                or (relay is None and not snapshot.usable(provider))
                or (relay is not None and provider.on_gateway and not snapshot.routes.demo)
            ):
                continue
            if serves(current, provider, model, task) is not None:
                return True
    return False


def _image_fields(body: dict[str, Any], route: RouteSpec) -> dict[str, Any]:
    fields = {k: v for k, v in body.items() if k not in CHAT_ONLY_FIELDS}
    fields["response_format"] = "b64_json" if route.chat_image_format == "data_uri" else "url"
    return fields


async def _resolve(request: web.Request, found: list[FoundImage]) -> list[InputImage]:
    if not found:
        return []
    try:
        return await resolve([(f.param, f.url) for f in found], input_context(request))
    except InputError as exc:
        raise bad_request(str(exc), exc.param) from None
    except Overloaded as exc:  # no bytes free for a fetched image
        raise overloaded(exc) from None


async def run(
    request: web.Request, job: ImageJob, on_progress: ProgressFn | None = None
) -> Outcome:
    return await run_job(request, job, on_progress=on_progress)


async def _stream(
    request: web.Request,
    job: ImageJob,
    chat: ChatInput,
    model: str,
    first_line: str,
    headers: dict[str, str],
    route: RouteSpec,
    include_usage: bool,
) -> web.StreamResponse:
    stream = sse.SseStream(request, keepalive=KEEPALIVE_SECONDS)
    chunks = chat_reply.Chunks(chat_reply.completion_id(), int(time.time()), model, include_usage)
    await stream.start({**headers, "x-pixgate-route": route.name})
    try:
        await stream.send(chunks.delta({"role": "assistant", "content": ""}))
        await stream.send(chunks.delta({"reasoning_content": first_line + "\n"}))
        try:
            outcome = await stream.while_working(_work(request, job, stream, chunks))
        except sse.ClientGone:
            raise
        except Exception as exc:
            await stream.send({"error": _error_body(request, exc)})
            await stream.done()
            return stream.response
        parts = chat_reply.content_parts(outcome)
        for part in parts:
            await stream.send(chunks.delta({"content": part}))
        await stream.send(chunks.delta({}, "stop"))
        if include_usage:
            await stream.send(chunks.usage(chat_reply.usage(chat.prompt, "".join(parts))))
        await stream.done()
    except sse.ClientGone:
        log.info("client went away mid-stream request_id=%s", context(request).id)
    return stream.response


async def _work(
    request: web.Request, job: ImageJob, stream: sse.SseStream, chunks: chat_reply.Chunks
) -> Outcome:
    """Run the job, sending each new progress line as a reasoning chunk while it runs."""
    lines: asyncio.Queue[str] = asyncio.Queue()
    running = asyncio.ensure_future(run(request, job, chat_reply.ProgressFeed(lines.put_nowait)))
    try:
        while True:
            waiting = asyncio.ensure_future(lines.get())
            try:
                done, _ = await asyncio.wait(
                    {running, waiting}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiting.cancel()
            if running in done:
                return running.result()
            await stream.send(chunks.delta({"reasoning_content": waiting.result()}))
    finally:
        if not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


def _error_body(request: web.Request, exc: Exception) -> dict[str, Any]:
    """An exception after the stream started, as the `error` object of an error chunk."""
    if not isinstance(exc, ApiError):
        log.error("error mid-stream request_id=%s", context(request).id, exc_info=exc)
        exc = ApiError(
            500,
            "internal error in the gateway; the request id identifies it in the logs",
            type="server_error",
            code="internal_error",
        )
    return {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
