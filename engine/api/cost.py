"""The cost of an answered image request, from the price that applies to the target that
answered: the route target's `pricing`, else the route's, else the provider file's."""

from __future__ import annotations

from ..config.loader import ConfigSnapshot
from ..pricing import Price, actual, job_steps
from ..runtime.job import ImageJob
from ..runtime.request import Outcome


def price_of(snapshot: ConfigSnapshot, route: str, provider: str, model: str) -> Price | None:
    spec = snapshot.routes.routes.get(route) or snapshot.direct.get(route)
    if spec is not None:
        for target in spec.targets:
            if target.provider == provider and target.model == model and target.pricing:
                return target.pricing
        if spec.pricing is not None:
            return spec.pricing
    p = snapshot.providers.get(provider)
    m = p.models.get(model) if p is not None else None
    return m.pricing if m is not None else None


def outcome_cost(snapshot: ConfigSnapshot, job: ImageJob, outcome: Outcome) -> float | None:
    """USD for the images returned (None: no price known for the model that answered)."""
    price = price_of(snapshot, outcome.route, outcome.provider, outcome.model)
    if price is None:
        return None
    size = (outcome.size.width, outcome.size.height) if outcome.size else job.size
    return actual(price, len(outcome.data), size, job.quality, job_steps(job.extra), outcome.usage)
