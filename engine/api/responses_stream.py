"""`stream: true` on /v1/responses: the Responses API's event stream for an image call.

Events, each `event: <type>` + `data: {"type": <type>, "sequence_number": n, ...}`:
`response.created`, `response.in_progress`, `response.output_item.added`,
`response.image_generation_call.in_progress` and `.generating`; then a `.partial_image` per
preview the provider streams (the tool's `partial_images` asks for them); a `.completed` per
final image as it becomes known; and once the work is done, `response.output_item.done` per
image and `response.completed` with the whole Response. No `data: [DONE]` (OpenAI sends none).

Like the image streams, the response starts with the first thing the provider reports, or
after `KEEPALIVE_SECONDS` of quiet: a failure before that is an ordinary OpenAI error response
(with its status, so clients can retry a 429); after it, an `error` event and
`response.failed` end the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from ..runtime.job import ImageJob
from ..runtime.lifecycle import bodygate
from ..runtime.request import NoUpstream, Outcome, StreamImage
from ..runtime.routing.failures import UpstreamFailure
from ..runtime.routing.router import UnknownModel
from . import images, imagestream, metering, sse
from .admission import admit
from .context import context
from .errors import ApiError
from .responses_output import Shape, generation_call, new_item_id

KEEPALIVE_SECONDS = sse.KEEPALIVE_SECONDS
PREFIX = "response.image_generation_call"


class _End:
    """Queued after the work finished, successfully or not."""


_Item = tuple[str, StreamImage] | _End


async def respond(
    request: web.Request, job: ImageJob, shape: Shape, partial_images: int | None
) -> web.StreamResponse:
    ctx = context(request)
    queue: asyncio.Queue[_Item] = asyncio.Queue()
    info = images.request_info(
        request,
        ctx,
        on_partial=lambda img: queue.put_nowait(("partial", img)),
        on_image=lambda img: queue.put_nowait(("final", img)),
        partial_images=partial_images,
    )

    ticket = await admit(ctx, job)

    async def work() -> Outcome:
        try:
            return await metering.run(request, ctx, job, info, ticket.hold)
        finally:
            await ticket.release()
            queue.put_nowait(_End())

    task = asyncio.create_task(work())
    events = _Events(sse.SseStream(request, keepalive=KEEPALIVE_SECONDS), shape)
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                if events.started:
                    await events.stream.comment()
                else:
                    await events.open()
                continue
            if isinstance(item, _End):
                break
            await events.open()
            kind, image = item
            if kind == "partial":
                await events.partial(image)
                del item, image  # written: the megabytes go before the slot does
                bodygate.event_written()
            else:
                await events.final(image)  # kept for response.completed: so is the slot
        try:
            outcome = task.result()
        except (UnknownModel, NoUpstream, UpstreamFailure) as exc:
            error = images.service_error(ctx, exc)
            if not events.started:
                raise error from None
            await events.failed(error)
        else:
            ctx.provider = outcome.provider
            await events.completed(outcome)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await events.stream.response.write_eof()
    except sse.ClientGone:
        pass  # the finally below stops the upstream work
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await ticket.release()  # also when the task was cancelled before it ever ran
    return events.stream.response


class _Events:
    """The stream's events in order, with their sequence numbers and output items."""

    def __init__(self, stream: sse.SseStream, shape: Shape) -> None:
        self.stream = stream
        self.shape = shape
        self.started = False
        self.sequence = 0
        self.item_ids = [new_item_id()]
        self.results: list[str] = []  # final images, in output order

    async def send(self, kind: str, **fields: Any) -> None:
        await self.stream.send({"type": kind, **fields, "sequence_number": self.sequence}, kind)
        self.sequence += 1

    async def open(self) -> None:
        """The preamble, once: the response exists and its first image call is generating."""
        if self.started:
            return
        await self.stream.start()
        self.started = True
        await self.send("response.created", response=self.shape.response("in_progress", []))
        await self.send("response.in_progress", response=self.shape.response("in_progress", []))
        await self._item_started(0)
        await self.send(f"{PREFIX}.generating", output_index=0, item_id=self.item_ids[0])

    async def _item_started(self, index: int) -> None:
        item = self.shape.call_item(self.item_ids[index], "in_progress", None)
        await self.send("response.output_item.added", output_index=index, item=item)
        await self.send(f"{PREFIX}.in_progress", output_index=index, item_id=self.item_ids[index])

    async def partial(self, image: StreamImage) -> None:
        index = len(self.results)
        if index >= len(self.item_ids):  # a preview of a further image
            self.item_ids.append(new_item_id())
            await self._item_started(index)
        fmt, size = await imagestream.describe(image.b64_json)
        await self.send(
            f"{PREFIX}.partial_image",
            output_index=index,
            item_id=self.item_ids[index],
            partial_image_index=image.index,
            partial_image_b64=image.b64_json,
            size=size or "auto",
            quality=self.shape.quality or "auto",
            background=self.shape.background or "auto",
            output_format=fmt or "png",
        )

    async def final(self, image: StreamImage) -> None:
        index = len(self.results)
        if index >= len(self.item_ids):
            self.item_ids.append(new_item_id())
            await self._item_started(index)
        self.results.append(image.b64_json)
        await self.send(f"{PREFIX}.completed", output_index=index, item_id=self.item_ids[index])

    async def completed(self, outcome: Outcome) -> None:
        output = [
            await generation_call(self.shape, b64, outcome, self.item_ids[i])
            for i, b64 in enumerate(self.results)
        ]
        answer = self.shape.response("completed", output, outcome)
        for index, item in enumerate(answer["output"]):
            await self.send("response.output_item.done", output_index=index, item=item)
        await self.send("response.completed", response=answer)

    async def failed(self, error: ApiError) -> None:
        await self.send("error", code=error.code, message=error.message, param=error.param)
        body = {"code": _failure_code(error), "message": error.message}
        await self.send("response.failed", response=self.shape.response("failed", [], error=body))


def _failure_code(error: ApiError) -> str:
    """The ResponseErrorCode closest to the gateway's error."""
    if error.status == 429:
        return "rate_limit_exceeded"
    if error.code == "content_policy_violation":
        return "image_content_policy_violation"
    if error.status == 400:
        return "invalid_prompt"
    return "server_error"
