"""Which attempts can take a request, and the clearest error when none can or all failed."""

from __future__ import annotations

from collections.abc import Sequence

from ..job import ImageJob
from ..request import NoUpstream, RequestInfo
from .failures import FINAL_KINDS, UpstreamFailure
from .router import Attempt, Plan


def servable(job: ImageJob, plan: Plan, images: int | None = None) -> Sequence[Attempt]:
    """The plan's attempts whose model takes this request's n and input images (`images`:
    their count before they are fetched), in their order: the plan's own tuple when every
    attempt does (most requests)."""
    count = len(job.images) if images is None else images
    if job.n <= plan.max_n and count <= plan.max_images:
        return plan.attempts
    return [a for a in plan.attempts if job.n <= a.model.max_n and count <= a.model.max_images]


def why_nothing(
    job: ImageJob, plan: Plan, relay: str | None, images: int | None = None
) -> NoUpstream:
    """The clearest reason no target can take this request (a 400 when it is the request's)."""
    name = job.model or plan.route.name
    count = len(job.images) if images is None else images
    if plan.attempts:
        if any(job.n > a.model.max_n for a in plan.attempts):
            most = max(a.model.max_n for a in plan.attempts)
            return NoUpstream(f"n must be at most {most} for model '{name}'", 400, "n")
        most = max(a.model.max_images for a in plan.attempts)
        return NoUpstream(
            f"model '{name}' takes at most {most} input images, got {count}", 400, "image"
        )
    if plan.skipped and all(s.reason.startswith("does not support") for s in plan.skipped):
        return NoUpstream(f"model '{name}' does not support {job.task}", 400, "model")
    reasons = "; ".join(f"{s.target.provider}/{s.target.model}: {s.reason}" for s in plan.skipped)
    return NoUpstream(
        f"no upstream can serve '{plan.route.name}' for {job.task} right now"
        + (f" ({reasons})" if reasons else ""),
        400 if relay else 503,
        "model" if relay else None,
    )


def most_informative(failures: list[UpstreamFailure]) -> UpstreamFailure:
    if not failures:
        return UpstreamFailure("upstream", "no upstream attempt was made")
    for failure in failures:
        if failure.kind in FINAL_KINDS:
            return failure
    if all(f.kind == "rate_limited" for f in failures):
        waits = [f.retry_after for f in failures if f.retry_after is not None]
        last = failures[-1]
        return UpstreamFailure(
            "rate_limited", last.message, last.status, min(waits) if waits else None, last.provider
        )
    return failures[-1]


def last_reason(info: RequestInfo) -> str:
    return f" (last failure: {info.failures[-1].message})" if info.failures else ""
