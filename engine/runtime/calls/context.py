"""The template context of one upstream call: every name a provider template may read
(docs/providers.md, `CONTEXT_NAMES`). `ImageService` builds it here for serve, and
`pixgate explain` builds it here too, so a dry run renders exactly what serve would send."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...dsl.sizes import Size
from ..job import ImageJob
from ..routing.router import Attempt


def base_context(
    job: ImageJob,
    attempt: Attempt,
    size: Size,
    key: str | None,
    request_id: str,
    *,
    stream: bool = False,
    partial_images: int | None = None,
) -> dict[str, Any]:
    """What every call of one attempt shares."""
    model = attempt.model
    return {
        "task": attempt.task,
        "prompt": attempt.prompt or job.prompt,
        "negative_prompt": job.negative_prompt,
        "model": model.name,
        "total_n": job.n,
        "size": size.as_context(),
        "quality": job.quality,
        "style": job.style,
        "response_format": job.response_format or attempt.response_format,  # response_format()
        "output_format": job.output_format,
        "background": job.background,
        "user": job.user,
        "images": job.images,
        "image": job.images[0] if job.images else None,
        "mask": job.mask,
        "extra": job.extra,
        "params": model.params,
        "key": key,
        "request_id": request_id,
        "stream": stream,
        "partial_images": partial_images,
    }


def response_format(job: ImageJob, attempt: Attempt) -> str:
    """`url` or `b64_json`: what the client asked for, else the attempt's default."""
    return job.response_format or attempt.response_format


def call_context(
    base: Mapping[str, Any], job: ImageJob, index: int, count: int, random_seed: Any
) -> dict[str, Any]:
    """One call's context: its share of n, its index, its seed (seed + index)."""
    return with_call(dict(base), job, index, count, random_seed)


def with_call(
    ctx: dict[str, Any], job: ImageJob, index: int, count: int, random_seed: Any
) -> dict[str, Any]:
    """`call_context` into a base made for this one call (no copy of it): `ctx` itself."""
    ctx["n"] = count
    ctx["call_index"] = index
    ctx["seed"] = job.seed + index if job.seed is not None and index else job.seed
    ctx["random_seed"] = random_seed
    return ctx


def call_counts(total: int, per_call: int) -> list[int]:
    """How n is split into calls of at most `per_call` images."""
    if 0 < total <= per_call:
        return [total]  # one call: most requests
    return [min(per_call, total - i) for i in range(0, total, per_call)]
