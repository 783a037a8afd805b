"""A job record: what the state backend stores and what clients see of it."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
# Never shown to clients: who owns it, where it calls back, and what lets another replica
# run it on (its request, checkpoint, how often it was sent again).
PRIVATE = ("owner", "callback_url", "request", "checkpoint", "resubmits")


def new_id() -> str:
    return "imgjob_" + secrets.token_urlsafe(24)  # 192 random bits: unguessable


def new_record(job_id: str, owner: str, model: str | None) -> dict[str, Any]:
    return {
        "id": job_id,
        "object": "image.job",
        "status": "queued",
        "created_at": int(time.time()),
        "created": time.time(),  # the list cursor; finer than created_at
        "model": model or "auto",
        "progress": None,
        "result": None,
        "error": None,
        "cost_usd": None,  # once succeeded: what x-pixgate-cost-usd would say (None: unpriced)
        "owner": owner,
    }


def public(record: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in record.items() if k not in PRIVATE and k != "created"}
    return view


def owner_of(token: str | None, client: str | None, relay: bool) -> str:
    """Who owns a job: a clients.yaml name, else a digest of the bearer key, else anonymous."""
    if client is not None:
        return "client:" + client
    if token:
        kind = "relay" if relay else "key"
        return f"{kind}:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    return "anonymous"
