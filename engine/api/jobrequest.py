"""What an async job's record keeps of its request, so another replica can run it on.

The canonical job without its input images (they are not kept), the request's id, public URL
and client name, for a relayed request the provider, and what metering needs to settle the job
on another replica (its usage name and budget reservation); never a key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from .. import rawtext
from ..runtime.job import ImageJob
from ..usage.budget import Hold
from .context import RequestContext
from .metering import who

KEPT = tuple(f.name for f in dataclasses.fields(ImageJob) if f.name not in ("images", "mask"))


def request_record(
    request: web.Request, ctx: RequestContext, job: ImageJob, public_url: str, hold: Hold | None
) -> dict[str, Any]:
    client, relay = ctx.client, ctx.relay
    fields = {name: getattr(job, name) for name in KEPT}
    return {
        "job": rawtext.plain(fields),
        "images": len(job.images) + (job.mask is not None),
        "request_id": ctx.id,
        "public_url": public_url,
        "client": client.name if client is not None else None,
        "relay": relay[0] if relay else None,  # the provider only: the key is never kept
        "usage_client": who(request, client, relay),
        "hold": None if hold is None else [list(hold.names), list(hold.ttls), hold.reserved],
    }


def job_of(saved: dict[str, Any]) -> ImageJob:
    fields = {k: v for k, v in (saved.get("job") or {}).items() if k in KEPT}
    if isinstance(fields.get("size"), list):
        fields["size"] = tuple(fields["size"])
    return ImageJob(**fields)


def hold_of(saved: dict[str, Any]) -> Hold | None:
    """The budget reservation the request made (settled by whichever replica ends the job)."""
    found = saved.get("hold")
    if not isinstance(found, list) or len(found) != 3:
        return None
    names, ttls, reserved = found
    return Hold(tuple(names), tuple(float(t) for t in ttls), int(reserved))
