"""What an async job's record keeps of its request, so another replica can run it on.

The canonical job without its input images (they are not kept), the request's id, public URL
and client name, and for a relayed request the provider; never a key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from .. import rawtext
from ..runtime.job import ImageJob
from .keys import CLIENT, RELAY, REQUEST_ID

KEPT = tuple(f.name for f in dataclasses.fields(ImageJob) if f.name not in ("images", "mask"))


def request_record(request: web.Request, job: ImageJob, public_url: str) -> dict[str, Any]:
    client = request.get(CLIENT)
    relay = request.get(RELAY)
    fields = {name: getattr(job, name) for name in KEPT}
    return {
        "job": rawtext.plain(fields),
        "images": len(job.images) + (job.mask is not None),
        "request_id": request[REQUEST_ID],
        "public_url": public_url,
        "client": client.name if client is not None else None,
        "relay": relay[0] if relay else None,  # the provider only: the key is never kept
    }


def job_of(saved: dict[str, Any]) -> ImageJob:
    fields = {k: v for k, v in (saved.get("job") or {}).items() if k in KEPT}
    if isinstance(fields.get("size"), list):
        fields["size"] = tuple(fields["size"])
    return ImageJob(**fields)
