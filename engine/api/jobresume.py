"""How another replica goes on with an async job whose replica died (jobrequest.py: what the
record keeps of the request).

`recover` picks one of: resume from the checkpoint (polling again, never submitting again),
run it from the start (nothing had been sent upstream yet, or the route sets
`resubmit_on_loss` and it was not resubmitted before), or fail it with `job_lost`.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from .. import rawtext
from ..jobs.manager import Failure, JobLost, Progress, Work
from ..pricing import usd
from ..runtime.calls.checkpoint import Journal, NotResumable
from ..runtime.cancel import cancel_upstream
from ..runtime.job import ImageJob
from ..runtime.lifecycle import bodygate
from ..runtime.request import NoUpstream, Outcome, RequestInfo
from ..runtime.resume import resumable_attempt, resume
from ..runtime.routing.failures import UpstreamFailure
from ..runtime.routing.router import UnknownModel
from .images import images_response, service_error
from .jobrequest import hold_of, job_of
from .jobs import error_object
from .keys import SETTINGS, STATE
from .metering import METER, OTHER, metered

log = logging.getLogger("pixgate.jobs")


def recoverer(app: web.Application) -> Any:
    """`JobManager.recover` for this app."""

    async def recover(record: dict[str, Any]) -> tuple[Work, Failure]:
        saved = record.get("request")
        if not isinstance(saved, dict):
            raise JobLost("The replica running this job stopped, and its request was not kept.")
        if saved.get("relay"):
            raise JobLost(
                "The replica running this job stopped; it ran with the client's own provider "
                "key, which the gateway never stores, so it cannot go on."
            )
        state = app[STATE]
        snapshot = state.snapshot
        job = job_of(saved)
        checkpoint = record.get("checkpoint") or {}
        settings = app[SETTINGS]
        self_url = state.internal_url or f"http://127.0.0.1:{settings.port}"
        info = RequestInfo(
            str(saved.get("request_id") or record["id"]),
            str(saved.get("public_url") or settings.public_url or self_url),
            self_url,
            client=saved.get("client"),
        )
        if checkpoint.get("attempt"):
            try:
                resumable_attempt(state.service, job, snapshot, checkpoint)
            except NotResumable as why:
                _may_resubmit(record, saved, job, snapshot, state.service, str(why))
            else:
                return _work(app, job, info, saved, checkpoint), error_object
        elif saved.get("images"):
            raise JobLost("The replica running this job stopped; its input images are not kept.")
        return _work(app, job, info, saved, None), error_object

    return recover


def canceller(app: web.Application) -> Any:
    """`JobManager.cancel_upstream` for this app."""

    async def cancel(record: dict[str, Any]) -> None:
        saved = record.get("request")
        if not isinstance(saved, dict) or saved.get("relay"):
            return
        state = app[STATE]
        self_url = state.internal_url or f"http://127.0.0.1:{app[SETTINGS].port}"
        request_id = str(saved.get("request_id") or record["id"])
        try:
            await cancel_upstream(
                state.service,
                job_of(saved),
                state.snapshot,
                record.get("checkpoint") or {},
                request_id,
                self_url,
            )
        except NotResumable as why:
            log.warning("job %s: no upstream cancel sent (%s)", record["id"], why)

    return cancel


def _may_resubmit(
    record: dict[str, Any],
    saved: dict[str, Any],
    job: ImageJob,
    snapshot: Any,
    service: Any,
    why: str,
) -> None:
    """Returns when the job may run again from the start; else raises JobLost."""
    lost = f"The replica running this job stopped and the job cannot be resumed ({why})"
    try:
        route = service.router.plan(snapshot, job.model, job.task, None).route
    except (UnknownModel, NoUpstream):
        raise JobLost(f"{lost}.") from None
    if not route.resubmit_on_loss:
        raise JobLost(
            f"{lost}; it was not sent again, since the upstream may already have run it "
            f"(route '{route.name}' has resubmit_on_loss: false)."
        )
    if record.get("resubmits", 0) >= 1:
        raise JobLost(f"{lost}; it was already sent again once.")
    if saved.get("images"):
        raise JobLost(f"{lost}; its input images are not kept, so it cannot be sent again.")
    record["resubmits"] = record.get("resubmits", 0) + 1


def _work(
    app: web.Application,
    job: ImageJob,
    info: RequestInfo,
    saved: dict[str, Any],
    checkpoint: dict[str, Any] | None,
) -> Work:
    async def work(progress: Progress, journal: Journal) -> tuple[dict[str, Any], dict[str, Any]]:
        state = app[STATE]
        snapshot = state.snapshot
        info.on_progress = progress
        info.journal = journal
        journal.resume_from = checkpoint

        async def call() -> Outcome:
            with bodygate.own_ticket(state.body_gate):  # large bodies wait for a slot here too
                if checkpoint is not None:
                    return await resume(state.service, job, snapshot, info)
                return await state.service.run(job, snapshot, info)

        # Usage and budget are settled here, as the replica that took the request would
        # have (once per job: metering.metered).
        client = str(saved.get("usage_client") or OTHER)
        try:
            outcome = await metered(
                app[METER], client, job, snapshot, info, hold_of(saved), call()
            )
        except NotResumable as why:  # the config changed since the check
            raise JobLost(f"The job cannot be resumed here ({why}).") from None
        except (UnknownModel, NoUpstream, UpstreamFailure) as exc:
            raise service_error(None, exc) from None
        body: dict[str, Any] = rawtext.plain(images_response(outcome))
        cost = outcome.cost_usd
        return body, {"cost_usd": usd(cost) if cost is not None else None}

    return work
