"""/v1/images/jobs: async submission (Prefer: respond-async), polling, listing, cancelling;
and Idempotency-Key for every image POST."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..jobs import idempotency
from ..jobs.manager import JobManager, Release, TooManyJobs, Work
from ..jobs.records import ACTIVE, owner_of, public
from ..runtime.job import ImageJob
from .bearer import bearer_token
from .context import context
from .errors import ApiError
from .jsonio import json_response

JOBS = web.AppKey("pixgate_jobs", JobManager)
Sync = Callable[[], Awaitable[web.Response]]
# Admits an async job: its work, what ends its admission, what its record keeps of it.
Detach = Callable[[], Awaitable[tuple[Work, Release, dict[str, Any]]]]
WAIT = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
KEPT_HEADERS = ("content-type", "location")  # plus x-pixgate-*, replayed as they were


def wants_async(request: web.Request) -> bool:
    headers = request.headers
    asked = "Prefer" in headers and any(  # (most requests send no Prefer)
        "respond-async" in p.lower() for p in headers.getall("Prefer")
    )
    return asked or request.query.get("async", "").lower() in ("1", "true")


def owner(request: web.Request) -> str:
    ctx = context(request)
    client = ctx.client
    return owner_of(bearer_token(request), client.name if client else None, ctx.relay is not None)


def respond(
    request: web.Request, job: ImageJob, sync: Sync, detach: Detach
) -> Awaitable[web.Response]:
    """Run `job` now (`sync`) or as a background job, once per Idempotency-Key. (Without a
    key it hands over the callee's coroutine: no frame of its own while the request waits;
    nothing here raises before that.)"""
    callback = job.extra.pop("callback_url", None)
    key = request.headers.get("Idempotency-Key", "").strip()
    is_async = wants_async(request)
    if not key:
        return _submit(request, job, detach, callback) if is_async else sync()
    return _once(request, job, sync, detach, callback, key, is_async)


async def _once(
    request: web.Request,
    job: ImageJob,
    sync: Sync,
    detach: Detach,
    callback: Any,
    key: str,
    is_async: bool,
) -> web.Response:
    """`respond` with an Idempotency-Key: a second request with it gets the first's answer."""
    if len(key) > 255:
        raise ApiError(
            400, "Idempotency-Key is longer than 255 characters", param="Idempotency-Key"
        )
    manager = request.app[JOBS]
    store, ttl = manager.store, manager.config.idempotency_ttl
    extra = {"async": is_async, "callback_url": callback}
    print_ = idempotency.fingerprint(request.path, job, extra)
    rid = idempotency.record_id(owner(request), key)
    try:
        found = await idempotency.claim(store, rid, print_, ttl)
        if found is not None:
            return await _replay(request, await idempotency.answer_of(store, rid, found, 600))
    except idempotency.KeyReused:
        raise ApiError(
            422,
            "This Idempotency-Key was already used with a different request body.",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        ) from None
    except idempotency.StillRunning:
        raise ApiError(
            409,
            "A request with this Idempotency-Key is still in progress; retry later.",
            param="Idempotency-Key",
            code="idempotency_key_in_use",
        ) from None
    try:
        response = await (_submit(request, job, detach, callback) if is_async else sync())
    except ApiError as exc:
        if exc.status >= 500 or exc.status in (408, 409, 429):
            await idempotency.let_go(store, rid)  # worth a retry: it may succeed next time
        else:
            await idempotency.store_answer(store, rid, print_, _captured(exc.response()), ttl)
        raise
    except BaseException:
        await idempotency.let_go(store, rid)
        raise
    await idempotency.store_answer(store, rid, print_, _captured(response), ttl)
    return response


def _captured(response: web.Response) -> dict[str, Any]:
    body = response.body
    text = body.decode() if isinstance(body, bytes) else ""
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() in KEPT_HEADERS or k.lower().startswith("x-pixgate-")
    }
    return {"status": response.status, "body": text, "headers": headers}


async def _replay(request: web.Request, answer: dict[str, Any]) -> web.Response:
    headers = {**answer.get("headers", {}), "Idempotent-Replayed": "true"}
    body = answer.get("body", "")
    if answer.get("status") == 202:  # a job: its state now, not as it was at submission
        job = orjson.loads(body)
        now = await request.app[JOBS].get(job["id"], owner(request))
        body = orjson.dumps(public(now)).decode() if now else body
    return web.Response(status=int(answer.get("status", 200)), text=body, headers=headers)


async def _submit(
    request: web.Request, job: ImageJob, detach: Detach, callback: Any
) -> web.Response:
    manager = request.app[JOBS]
    extra: dict[str, Any] = {}
    if callback is not None:
        from ..jobs.webhooks import check_callback

        extra["callback_url"] = await check_callback(request, callback, manager)
    who = owner(request)
    if manager.active(who) >= manager.config.per_owner or manager.active() >= manager.config.total:
        raise _too_many(TooManyJobs("per client", manager.config.per_owner))
    work, release, extra["request"] = await detach()  # admission: a refusal is the request's
    try:
        record = await manager.submit(who, job.model, work, error_object, release, extra)
    except TooManyJobs as exc:
        await release()
        raise _too_many(exc) from None
    location = f"/v1/images/jobs/{record['id']}"
    return json_response(public(record), status=202, headers={"Location": location})


def _too_many(exc: TooManyJobs) -> ApiError:
    return ApiError(
        429, str(exc), type="rate_limit_error", code="too_many_jobs", headers={"Retry-After": "5"}
    )


def error_object(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ApiError):
        return {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
    return {"message": "the job failed", "type": "server_error", "param": None, "code": None}


def viewer(request: web.Request) -> str | None:
    """The owner whose jobs this request may see; None for the admin (every job)."""
    return None if request.path.startswith("/admin") else owner(request)


def not_found(job_id: str) -> ApiError:
    return ApiError(404, f"No image job found with id '{job_id}'.", param="id", code="not_found")


def wait_seconds(raw: str | None) -> float:
    if not raw:
        return 0.0
    match = WAIT.match(raw.strip())
    if match is None:
        raise ApiError(400, "wait must look like 30s, 500ms or 2m", param="wait")
    value = float(match.group(1))
    return (
        value / 1000 if match.group(2) == "ms" else value * 60 if match.group(2) == "m" else value
    )


async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    manager = request.app[JOBS]
    wait = wait_seconds(request.query.get("wait"))
    record = await manager.wait(job_id, viewer(request), wait)
    if record is None:
        raise not_found(job_id)
    return json_response(_shown(request, record))


def _shown(request: web.Request, record: dict[str, Any]) -> dict[str, Any]:
    view = public(record)
    if request.path.startswith("/admin"):
        view["owner"] = record.get("owner")
    return view


async def delete_job(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    record = await request.app[JOBS].cancel(job_id, viewer(request))
    if record is None:
        raise not_found(job_id)
    return json_response(_shown(request, record))


async def list_jobs(request: web.Request) -> web.Response:
    manager = request.app[JOBS]
    try:
        limit = max(1, min(100, int(request.query.get("limit") or 20)))
        after = request.query.get("after")
        before = float(after) if after else None
    except ValueError:
        raise ApiError(400, "limit must be an integer and after a cursor", param="after") from None
    jobs, cursor = await manager.list(owner(request), before, limit)
    body = {
        "object": "list",
        "data": [public(j) for j in jobs],
        "has_more": cursor is not None,
        "next_cursor": repr(cursor) if cursor is not None else None,
    }
    return json_response(body)


def install(app: web.Application) -> None:
    app.router.add_get("/v1/images/jobs", list_jobs)
    app.router.add_get("/v1/images/jobs/{id}", get_job)
    app.router.add_delete("/v1/images/jobs/{id}", delete_job)
    app.router.add_get("/admin/jobs/{id}", get_job)
    app.router.add_delete("/admin/jobs/{id}", delete_job)


__all__ = ["ACTIVE", "JOBS", "JobManager", "install", "respond", "wants_async"]
