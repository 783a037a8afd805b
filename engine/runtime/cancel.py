"""The upstream cancel step for a durable job whose replica died: the client's DELETE is
answered by another replica, which tells the upstream itself (from the job's checkpoint: the
attempt, its key's id and each call's extracted values, such as the submit's task id)."""

from __future__ import annotations

from typing import Any

from ..config.loader import ConfigSnapshot
from ..dsl.sizes import Size, fit_size
from .calls.context import base_context, call_context
from .calls.executor import Executor
from .job import ImageJob
from .resume import find_attempt, saved_key
from .service import ImageService


async def cancel_upstream(
    service: ImageService,
    job: ImageJob,
    snapshot: ConfigSnapshot,
    checkpoint: dict[str, Any],
    request_id: str,
    self_url: str,
) -> int:
    """Send the provider's `cancel` step for every call of the checkpointed attempt that an
    upstream answered (best effort, each bounded). Returns how many calls were told; raises
    NotResumable when this replica's config no longer has the attempt or its key."""
    saved = checkpoint.get("attempt")
    if not isinstance(saved, dict) or saved.get("relay"):
        return 0  # nothing sent yet, or with a key the gateway never had
    attempt = find_attempt(service, job, snapshot, saved)
    provider = attempt.provider
    task = provider.tasks[attempt.task]
    if task.cancel is None:
        return 0
    key = saved_key(service, attempt, saved)
    base_url = provider.base_url if not provider.on_gateway else self_url + provider.base_url
    executor = Executor(
        service.client,
        provider,
        base_url,
        key,
        extra_headers=service.internal_headers if provider.on_gateway else None,
    )
    size = Size(*fit_size(job.size, attempt.model.sizes))
    base = base_context(job, attempt, size, key, request_id)
    told = 0
    for index, call in sorted((checkpoint.get("calls") or {}).items()):
        if not isinstance(call, dict) or not call.get("steps"):
            continue  # not begun, or its values were not kept (they held the key)
        seed = call.get("random_seed")
        ctx = call_context(base, job, int(index), int(call.get("count", 1)), seed)
        await executor.cancel(task, ctx, call["steps"])
        told += 1
    return told
