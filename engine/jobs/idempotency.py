"""Idempotency-Key: one answer per (client, key) for a day, whoever asks and however often.

The first request claims the key in the shared state (set-if-absent, so concurrent duplicates
on any replica find the claim), runs, and stores its answer; a duplicate waits for that answer
instead of calling the upstream again. The same key with another body is the client's bug: 422.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from typing import Any

import orjson

from ..runtime.job import ImageJob
from ..state.base import Jobs

PENDING = "pending"
POLL = 0.2


class KeyReused(Exception):
    """The key was used with another request body."""


class StillRunning(Exception):
    """The first request with this key has not answered within the wait."""


def fingerprint(path: str, job: ImageJob, extra: dict[str, Any]) -> str:
    """A digest of what the request asks for (multipart boundaries and field order aside)."""
    fields = {
        f.name: getattr(job, f.name)
        for f in dataclasses.fields(job)
        if f.name not in ("images", "mask")
    }
    digest = hashlib.sha256(path.encode())
    digest.update(orjson.dumps({**fields, **extra}, option=orjson.OPT_SORT_KEYS, default=str))
    for image in [*job.images, *([job.mask] if job.mask else [])]:
        digest.update(hashlib.sha256(image.data).digest())
    return digest.hexdigest()


def record_id(owner: str, key: str) -> str:
    return "idem_" + hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()


async def claim(store: Jobs, rid: str, print_: str, ttl: float) -> dict[str, Any] | None:
    """None: this request owns the key now. Else the stored answer of the first request
    (waited for while pending). Raises KeyReused."""
    mine = {"object": "idempotency", "fingerprint": print_, "state": PENDING, "at": time.time()}
    found = await store.claim_job(rid, mine, ttl)
    if found is None:
        return None
    if found.get("fingerprint") != print_:
        raise KeyReused()
    return found


async def answer_of(store: Jobs, rid: str, found: dict[str, Any], wait: float) -> dict[str, Any]:
    """The first request's stored answer, waiting for it up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while found.get("state") == PENDING:
        if time.monotonic() >= deadline:
            raise StillRunning()
        await asyncio.sleep(POLL)
        again = await store.get_job(rid)
        if again is None or again.get("state") not in (PENDING, "done"):
            # the first request failed and let go of the key: no answer to give
            raise StillRunning()
        found = again
    return found


async def store_answer(
    store: Jobs, rid: str, print_: str, answer: dict[str, Any], ttl: float
) -> None:
    record = {"object": "idempotency", "fingerprint": print_, "state": "done", **answer}
    await store.put_job(rid, record, ttl)


async def let_go(store: Jobs, rid: str) -> None:
    """The first request failed in a way worth retrying: the key is free again."""
    await store.put_job(rid, {"object": "idempotency", "state": "released"}, 0.001)
