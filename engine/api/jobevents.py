"""GET /v1/images/jobs/{id}/events: an async job as the image stream (imagestream.py) of the
same request would have sent it.

While the job runs: `image.job.progress` (a pixgate extension: OpenAI's image streams have no
progress event) with the job, whenever it changes. At the end, exactly what a `stream: true`
request for the same endpoint ends with: one `image_generation.completed` (generations) or
`image_edit.completed` (edits, variations, blends) per image, rendered by imagestream's own
function, then the `: x-pixgate-cost-usd` comment of a priced model; or the stream's `error`
event. A cancelled job ends with `image.job.cancelled` (a pixgate extension too: a stream is
cancelled by its client hanging up, so OpenAI defines no event for it). No `data: [DONE]`,
as OpenAI's image streams send none. docs/jobs.md documents it.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ..jobs.records import ACTIVE, public
from ..runtime.job import ImageJob
from ..runtime.request import StreamImage
from .errors import ApiError
from .imagestream import error_event, stream_event
from .jobrequest import job_of
from .jobs import JOBS, not_found, viewer
from .sse import KEEPALIVE_SECONDS, ClientGone, SseStream

PROGRESS, CANCELLED = "image.job.progress", "image.job.cancelled"


async def job_events(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    manager = request.app[JOBS]
    who = viewer(request)
    record = await manager.get(job_id, who)
    if record is None:
        raise not_found(job_id)
    stream = SseStream(request)
    await stream.start()
    last: Any = None
    deadline = time.monotonic() + manager.config.ttl
    try:
        while record is not None and time.monotonic() < deadline:
            if record["status"] not in ACTIVE:
                await _final(stream, record)
                break
            view = {"type": PROGRESS, **public(record)}
            if view != last:
                await stream.send(view, event=PROGRESS)
                last = view
            else:
                await stream.comment()
            record = await manager.changes(job_id, who, KEEPALIVE_SECONDS)
        await stream.response.write_eof()
    except (ClientGone, ConnectionError):
        pass
    return stream.response


async def _final(stream: SseStream, record: dict[str, Any]) -> None:
    status = record["status"]
    if status == "cancelled":
        await stream.send({"type": CANCELLED, **public(record)}, event=CANCELLED)
        return
    if status == "failed":
        error = record.get("error") or {}
        failure = ApiError(
            500,
            str(error.get("message") or "the job failed"),
            type=str(error.get("type") or "server_error"),
            param=error.get("param"),
            code=error.get("code"),
        )
        await stream.send(error_event(failure), event="error")
        return
    for event in await completed_events(record):
        await stream.send(event, event=event["type"])
    if record.get("cost_usd") is not None:
        await stream.comment(f"x-pixgate-cost-usd: {record['cost_usd']}")


async def completed_events(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The `completed` events of a succeeded job, one per image of its result. An image the
    job handed out as a URL (`response_format: url`) has an empty `b64_json` and its `url`
    (a pixgate extension: OpenAI's stream events carry base64 only)."""
    job = _job(record)
    kind = ("image_generation" if job.task == "generate" else "image_edit") + ".completed"
    result = record.get("result") or {}
    events = []
    for index, item in enumerate(result.get("data") or []):
        usage = result.get("usage") if index == 0 else None  # the response's, counted once
        image = StreamImage(str(item.get("b64_json") or ""), index, usage)
        event = await stream_event(kind, image, job)
        if item.get("url"):
            event["url"] = item["url"]
        events.append(event)
    return events


def _job(record: dict[str, Any]) -> ImageJob:
    saved = record.get("request")
    if isinstance(saved, dict):
        return job_of(saved)
    return ImageJob(task="generate", prompt="")  # a record from before jobs kept it
