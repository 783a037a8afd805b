"""Go on with a durable job another replica started, from the checkpoint it left.

The attempt is found again in this replica's config (same route, provider, model and task);
the key by its index in the provider's pool. Every call resumes at its last polling step with
the values the steps before it extracted: nothing is submitted again. Raises NotResumable
when that is not possible (the caller then resubmits or fails the job, per the route).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..config.loader import ConfigSnapshot
from .calls.checkpoint import NotResumable, check_resumable
from .job import ImageJob
from .redact import redact
from .request import Outcome, RequestInfo
from .routing.failures import UpstreamFailure
from .routing.router import Attempt
from .service import POLLING_DEADLINE, ImageService


def find_attempt(
    service: ImageService, job: ImageJob, snapshot: ConfigSnapshot, saved: dict[str, Any]
) -> Attempt:
    plan = service.router.plan(snapshot, job.model, job.task, None)
    wanted = (saved.get("route"), saved.get("provider"), saved.get("model"), saved.get("task"))
    for attempt in plan.attempts:
        if (attempt.route, attempt.provider.id, attempt.model.name, attempt.task) == wanted:
            return attempt
    raise NotResumable(f"its target ({wanted[1]} {wanted[2]}) is no longer configured")


def resumable_attempt(
    service: ImageService, job: ImageJob, snapshot: ConfigSnapshot, checkpoint: dict[str, Any]
) -> tuple[Attempt, str | None]:
    """The attempt and key to resume with; NotResumable when polling alone cannot finish."""
    saved = checkpoint.get("attempt")
    if not isinstance(saved, dict):
        raise NotResumable("no upstream attempt was checkpointed")
    if saved.get("relay"):
        raise NotResumable("it ran with the client's own (relayed) key, which is never stored")
    attempt = find_attempt(service, job, snapshot, saved)
    check_resumable(attempt.provider.tasks[attempt.task], checkpoint)
    index = saved.get("key_index")
    keys = attempt.provider.auth.keys
    if isinstance(index, int) and 0 <= index < len(keys):
        return attempt, keys[index]
    if index is not None or (attempt.provider.auth.required and keys):
        raise NotResumable("the key it used is not in this replica's pool")
    return attempt, None


async def resume(
    service: ImageService, job: ImageJob, snapshot: ConfigSnapshot, info: RequestInfo
) -> Outcome:
    journal = info.journal
    assert journal is not None and journal.resume_from is not None
    attempt, key = resumable_attempt(service, job, snapshot, journal.resume_from)
    journal.data = {"attempt": journal.resume_from["attempt"], "calls": {}}
    deadline = snapshot.route(attempt.route).timeout or POLLING_DEADLINE
    try:
        async with asyncio.timeout(deadline):
            outcome = await service.attempt(job, attempt, key, info)
    except TimeoutError:
        message = f"the resumed job did not finish within {deadline:g}s"
        raise UpstreamFailure("timeout", message) from None
    except UpstreamFailure as failure:
        failure.provider = attempt.provider.id
        failure.message = redact(failure.message, key)
        raise
    service.metrics.delivered(outcome.provider, len(outcome.data))
    return outcome
