"""`stream: true` on the image endpoints: OpenAI's image stream events over Server-Sent Events.

Frames are `event: <type>` + `data: {"type": <type>, ...}` with the types
`image_generation.partial_image` / `image_generation.completed` (`image_edit.*` for edits and
blends): a `partial_image` per preview the provider streams (`partial_images` asks for them),
then one `completed` per final image, as each becomes known. A provider that does not stream
gives only the `completed` events. The stream ends after the last `completed` event, without
`data: [DONE]` (as OpenAI's own streams do).

A priced model's stream ends with the comment line `: x-pixgate-cost-usd: <usd>` (the cost
is known only when the last image is; SSE parsers skip comments). The response starts with
the first event, or with the first keep-alive comment when nothing
has happened for `KEEPALIVE_SECONDS`. A failure before that is an ordinary OpenAI error
response; after it, an `error` event (`data: {"error": {...}}`) ends the stream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import time
from typing import Any

from aiohttp import web

from ..pricing import usd
from ..runtime.images.imagetypes import sniff
from ..runtime.job import ImageJob
from ..runtime.lifecycle import bodygate
from ..runtime.request import NoUpstream, Outcome, StreamImage
from ..runtime.routing.failures import UpstreamFailure
from ..runtime.routing.router import UnknownModel
from . import images, metering, params, sse
from .admission import admit
from .context import context
from .errors import ApiError, bad_request

# Quiet time before the response starts with a keep-alive comment (and after which an error
# can only be an error event), and between keep-alive comments. Tests make it small.
KEEPALIVE_SECONDS = sse.KEEPALIVE_SECONDS
MAX_PARTIAL_IMAGES = 3
OFFLOOP_CHARS = 512 * 1024

# The values OpenAI's stream event schemas allow.
_SIZES = ("1024x1024", "1024x1536", "1536x1024")
_QUALITIES = ("low", "medium", "high", "auto")
_BACKGROUNDS = ("transparent", "opaque", "auto")
_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


class StreamWish:
    """What a streaming client asked for."""

    __slots__ = ("partial_images",)

    def __init__(self, partial_images: int | None) -> None:
        self.partial_images = partial_images


def options(fields: dict[str, Any]) -> StreamWish | None:
    """The client's `stream` / `partial_images`; None when it does not stream."""
    if not params.flag(fields, "stream"):
        return None
    partial = fields.get("partial_images")
    if partial is not None and (
        isinstance(partial, bool)
        or not isinstance(partial, int)
        or not 0 <= partial <= MAX_PARTIAL_IMAGES
    ):
        raise bad_request(
            f"'partial_images' must be an integer from 0 to {MAX_PARTIAL_IMAGES}.",
            "partial_images",
        )
    return StreamWish(partial)


class _End:
    """Queued after the work finished, successfully or not."""


_Item = tuple[str, StreamImage] | _End


async def respond(
    request: web.Request, job: ImageJob, wish: StreamWish, prefix: str
) -> web.StreamResponse:
    """Run the job and stream its images; `prefix` is `image_generation` or `image_edit`."""
    ctx = context(request)
    ctx.model = job.model or "auto"
    job.response_format = "b64_json"  # stream events carry base64 only
    queue: asyncio.Queue[_Item] = asyncio.Queue()
    info = images.request_info(
        request,
        ctx,
        on_partial=lambda img: queue.put_nowait(("partial_image", img)),
        on_image=lambda img: queue.put_nowait(("completed", img)),
        partial_images=wish.partial_images,
    )

    ticket = await admit(ctx, job)

    async def work() -> Outcome:
        try:
            return await metering.run(request, ctx, job, info, ticket.hold)
        finally:
            await ticket.release()
            queue.put_nowait(_End())

    task = asyncio.create_task(work())
    stream = sse.SseStream(request, keepalive=KEEPALIVE_SECONDS)
    started = False
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                if not started:
                    await stream.start()
                    started = True
                await stream.comment()
                continue
            if isinstance(item, _End):
                break
            if not started:
                await stream.start()
                started = True
            kind, image = item
            await stream.send(
                await stream_event(f"{prefix}.{kind}", image, job), event=f"{prefix}.{kind}"
            )
            del item, image  # written: the megabytes go before the slot does
            bodygate.event_written()
        try:
            outcome = task.result()
        except (UnknownModel, NoUpstream, UpstreamFailure) as exc:
            error = images.service_error(ctx, exc)
            if not started:
                raise error from None
            await stream.send(error_event(error), event="error")
        else:
            ctx.provider = outcome.provider
            if outcome.cost_usd is not None:  # the headers are long gone: a closing comment
                await stream.comment(f"x-pixgate-cost-usd: {usd(outcome.cost_usd)}")
        with contextlib.suppress(ConnectionError, RuntimeError):
            await stream.response.write_eof()
    except sse.ClientGone:
        pass  # the finally below stops the upstream work
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await ticket.release()  # also when the task was cancelled before it ever ran
    return stream.response


def error_event(error: ApiError) -> dict[str, Any]:
    """The `error` event that ends a stream (an async job's events too)."""
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


async def stream_event(kind: str, image: StreamImage, job: ImageJob) -> dict[str, Any]:
    """One OpenAI stream event, valid against the spec's enums. `output_format` describes the
    image itself; `size` is its size when that is one of OpenAI's, else `auto`, and
    `pixgate_size` always holds the exact `WxH` when known. `quality` and `background` echo
    the request (`auto` when not given or not OpenAI's). Completed events always carry
    `usage` (see stream_usage)."""
    fmt, size = await describe(image.b64_json)
    exact = size or _requested_size(job)
    event: dict[str, Any] = {
        "type": kind,
        "b64_json": image.b64_json,
        "created_at": int(time.time()),
        "size": exact if exact in _SIZES else "auto",
        "quality": job.quality if job.quality in _QUALITIES else "auto",
        "background": job.background if job.background in _BACKGROUNDS else "auto",
        "output_format": fmt or job.output_format or "png",
    }
    if exact is not None:
        event["pixgate_size"] = exact
    if kind.endswith(".partial_image"):
        event["partial_image_index"] = image.index
    else:
        event["usage"] = stream_usage(image.usage)
    return event


def stream_usage(usage: Any) -> dict[str, Any]:
    """OpenAI's ImagesUsage (exactly its fields) from the upstream's usage when that has
    OpenAI's shape; all zeros when the upstream reported none, or tokens of another kind."""
    found = usage if images.is_image_usage(usage) else {}
    details = found.get("input_tokens_details")
    details = details if isinstance(details, dict) else {}

    def count(source: dict[str, Any], name: str) -> int:
        value = source.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return {
        "total_tokens": count(found, "total_tokens"),
        "input_tokens": count(found, "input_tokens"),
        "output_tokens": count(found, "output_tokens"),
        "input_tokens_details": {
            "text_tokens": count(details, "text_tokens"),
            "image_tokens": count(details, "image_tokens"),
        },
    }


def _requested_size(job: ImageJob) -> str | None:
    return f"{job.size[0]}x{job.size[1]}" if job.size else None


async def describe(b64: str) -> tuple[str | None, str | None]:
    """(`png`|`jpeg`|`webp`, `WxH`) read from the image's own header; None when unknown."""
    if len(b64) > OFFLOOP_CHARS:
        return await asyncio.to_thread(_describe_now, b64)
    return _describe_now(b64)


def _describe_now(b64: str) -> tuple[str | None, str | None]:
    from ..pillow import Image, UnidentifiedImageError  # loaded on the first image, not at start

    try:
        data = base64.b64decode(b64, validate=False)
    except (binascii.Error, ValueError):
        return None, None
    fmt = _FORMATS.get(sniff(data) or "")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return fmt, None
    return fmt, f"{width}x{height}"
