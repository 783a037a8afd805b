"""Go on with a durable job another replica started, from the checkpoint it left.

The attempt is found again in this replica's config (same route, provider, model and task);
the key by its id (state.key_ids), wherever it now sits in the provider's pool, and leased
like any attempt's (the provider's max_concurrency_per_key counts it). Every call resumes at
its last polling step with the values the steps before it extracted: nothing is submitted
again. Raises NotResumable when that is not possible (the caller then resubmits or fails the
job, per the route).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..config.loader import ConfigSnapshot
from ..dsl.spec import ProviderPolicy
from ..state import RELEASED, Denied, Grant
from .attempt import run_attempt
from .calls.checkpoint import NotResumable, check_resumable
from .job import ImageJob
from .redact import redact
from .request import Outcome, RequestInfo
from .routing.failures import UpstreamFailure
from .routing.router import Attempt
from .service import BUSY_WAIT_CAP, POLLING_DEADLINE, ImageService

LEASE_WAIT_CAP = 5.0  # the longest pause between two tries for the key's lease


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
    return attempt, saved_key(service, attempt, saved)


def saved_key(service: ImageService, attempt: Attempt, saved: dict[str, Any]) -> str | None:
    """The pool key the checkpointed attempt used, found by its id (by its index for a
    checkpoint of a version that kept that); NotResumable when the pool no longer has it."""
    keys = attempt.provider.auth.keys
    kid, index = saved.get("key_id"), saved.get("key_index")
    if isinstance(kid, str):
        for key in keys:
            if service.key_ids(attempt.provider.id, key) == kid:
                return key
        raise NotResumable("the key it used is no longer in this replica's pool")
    if isinstance(index, int) and 0 <= index < len(keys):
        return keys[index]
    if index is not None or (attempt.provider.auth.required and keys):
        raise NotResumable("the key it used is not in this replica's pool")
    return None


async def resume(
    service: ImageService, job: ImageJob, snapshot: ConfigSnapshot, info: RequestInfo
) -> Outcome:
    journal = info.journal
    assert journal is not None and journal.resume_from is not None
    attempt, key = resumable_attempt(service, job, snapshot, journal.resume_from)
    journal.data = {"attempt": journal.resume_from["attempt"], "calls": {}}
    deadline = snapshot.route(attempt.route).timeout or POLLING_DEADLINE
    policy = snapshot.routes.policy(attempt.provider.id)
    try:
        async with asyncio.timeout(deadline):
            grant = await _lease(service, attempt, policy, key)
            try:
                outcome = await run_attempt(service, job, attempt, key, info)
            except UpstreamFailure as failure:
                await service.state.settle(grant, policy, failure.kind, failure.retry_after)
                raise
            except BaseException:
                await service.state.settle(grant, policy, RELEASED, wait=False)
                raise
            await service.state.settle(grant, policy, None, wait=False)
    except TimeoutError:
        message = f"the resumed job did not finish within {deadline:g}s"
        raise UpstreamFailure("timeout", message) from None
    except UpstreamFailure as failure:
        failure.provider = attempt.provider.id
        failure.message = redact(failure.message, key)
        raise
    service.metrics.delivered(outcome.provider, len(outcome.data))
    return outcome


async def _lease(
    service: ImageService, attempt: Attempt, policy: ProviderPolicy, key: str | None
) -> Grant:
    """A grant on exactly the key the job used (its task lives in that key's account), as any
    attempt takes one: while the key is at its concurrency limit, cooling down or its
    provider's circuit is open, wait (the resume's deadline bounds it)."""
    others = [k for k in attempt.provider.auth.keys if k != key]
    waits = 0
    while True:
        try:
            return await service.state.acquire(
                attempt.provider, policy, pool=key is not None, exclude=others
            )
        except Denied as exc:
            waits += 1
            pause = exc.retry_after or min(BUSY_WAIT_CAP, 0.01 * waits)
            await asyncio.sleep(min(pause, LEASE_WAIT_CAP) * service.rng.uniform(0.5, 1.0))
