"""`pixgate explain`: a dry run of one image request against a config directory.

It builds the snapshot exactly as `serve` does (`build_snapshot`, the process environment),
asks the real `Router` for the plan, and renders the first attempt's upstream requests with the
real `build_request`, then prints what `serve` would do: which route, which targets in which
order and why the others are left out, how the size is mapped, and every HTTP request of the
first attempt. Nothing is sent anywhere.

What a dry run cannot know is shown as a placeholder: values earlier steps extract
(`<steps.submit.task_id>`), the request id and the per-call random seed. Keys are always masked
(`mask_key`): the real key never enters the rendering, a placeholder does, shown masked.

This module plans; `explain_views` holds the report, `explain_requests` renders the requests and
`explain_output` prints the report as text or JSON.
"""

from __future__ import annotations

import difflib
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..config.loader import ConfigSnapshot, build_snapshot
from ..dsl.sizes import Size, fit_size
from ..dsl.spec import ProviderSpec, SizeRule, TargetSpec
from ..runtime.calls.context import call_counts
from ..runtime.job import ImageJob, InputImage
from ..runtime.routing.breaker import Breakers
from ..runtime.routing.keys import KeyPools, mask_key
from ..runtime.routing.router import Attempt, Plan, Router, UnknownModel
from ..runtime.routing.verdicts import servable, why_nothing
from ..runtime.service import POLLING_DEADLINE, SYNC_DEADLINE
from .explain_output import FORMATTERS
from .explain_requests import render_steps
from .explain_views import AttemptView, Explanation, TargetView, size_text

__all__ = ["DEFAULT_PORT", "FORMATTERS", "Explanation", "explain", "load_image"]

DEFAULT_PORT = 8080


class _MostLikely(random.Random):
    """An RNG whose every draw is the median: `Router` then orders equal-priority targets by
    weight, heaviest first (stable among equal weights), the most likely of its random orders."""

    def random(self) -> float:
        return 0.5


def explain(
    directory: str | os.PathLike[str],
    job: ImageJob,
    *,
    env: Mapping[str, str] | None = None,
    render_all: bool = False,
    images: Sequence[dict[str, Any]] = (),
) -> Explanation:
    """Build the config, plan `job` and render its requests. `env` defaults to os.environ."""
    env = os.environ if env is None else env
    expl = Explanation(directory=os.fspath(directory), job=job, images=list(images))
    result = build_snapshot(directory, env)
    expl.warnings = len(result.diagnostics.warnings)
    if result.snapshot is None:
        expl.diagnostics = result.diagnostics.sorted()
        expl.problem = f"the config in {expl.directory} does not build"
        expl.exit_code = 1
        return expl
    snap = result.snapshot
    expl.version = snap.version
    expl.secrets = [k for p in snap.providers.values() for k in p.auth.keys]
    router = Router(_MostLikely())
    try:
        name = router.route_name(snap, job.model, job.task)
    except UnknownModel as exc:
        expl.problem = str(exc)
        if job.model:
            names = [*snap.routes.routes, *snap.routes.aliases, *snap.direct]
            expl.suggestions = difflib.get_close_matches(job.model, names, n=3, cutoff=0.5)
        expl.exit_code = 2
        return expl
    expl.route = name
    expl.resolved_by, expl.resolution = _resolution(snap, job, name)
    plan = router.plan(snap, job.model, job.task)
    route = plan.route
    expl.strategy = route.strategy
    expl.fallbacks = list(route.fallbacks)

    breakers = Breakers()  # a fresh process: every circuit closed
    positions: dict[int, int] = {}
    reasons: dict[int, str] = {}  # why a target is out, or (for an attempt) why it is in
    attempts = servable(job, plan)  # what serve tries, in its order
    for number, attempt in enumerate(attempts, 1):
        positions[id(attempt.target)] = number
        reasons[id(attempt.target)] = f"attempt {number} ({_why_in(job, attempt)})"
    for attempt in plan.attempts:
        if id(attempt.target) not in positions:
            reasons[id(attempt.target)] = _why_out(job, attempt)
    for skipped in plan.skipped:
        reasons[id(skipped.target)] = _skip_reason(snap, skipped.target, skipped.reason)

    for route_name in snap.chain(route.name):
        for target in snap.route(route_name).targets:
            pos = positions.get(id(target))
            reason = reasons.get(id(target), "?")
            expl.targets.append(
                TargetView(
                    route_name,
                    target.provider,
                    target.model,
                    target.priority,
                    target.weight,
                    pos is not None,
                    reason,
                    pos,
                )
            )

    port = env.get("PIXGATE_PORT") or str(DEFAULT_PORT)
    for pos, attempt in enumerate(attempts, 1):
        view = _attempt_view(snap, job, attempt, pos, breakers, port)
        if pos == 1 or render_all:
            view.steps = render_steps(job, attempt, view.base_url, _first_key(snap, attempt))
        expl.attempts.append(view)

    if attempts:
        polls = any(a.provider.tasks[a.task].polls for a in attempts)
        expl.deadline = route.timeout or (POLLING_DEADLINE if polls else SYNC_DEADLINE)
    else:
        expl.exit_code = 2
        expl.problem = _problem(job, plan)
    broken = [a.position for a in expl.attempts if any(s.error for s in a.steps or ())]
    if broken:
        expl.exit_code = 2
        expl.problem = (
            f"a request of attempt {broken[0]} cannot be rendered (serve would fail it too)"
        )
    expl.notes += _notes(snap, expl, attempts, route.name)
    return expl


def _why_in(job: ImageJob, attempt: Attempt) -> str:
    provider, model = attempt.provider, attempt.model
    keys = len(provider.auth.keys)
    parts = [f"{keys} key{'s' if keys != 1 else ''}" if keys else "needs no key"]
    if attempt.task == job.task:
        parts.append(f"serves {job.task}")
    else:
        parts.append(f"serves {job.task} through its {attempt.task} task")
    parts.append(f"n={job.n} within max_n {model.max_n}")
    if job.images:
        parts.append(f"{len(job.images)} images within max_images {model.max_images}")
    return ", ".join(parts)


def _why_out(job: ImageJob, attempt: Attempt) -> str:
    """Why `servable` leaves this attempt out."""
    model = attempt.model
    if job.n > model.max_n:
        return f"n={job.n} is above its max_n {model.max_n}"
    return f"{len(job.images)} input images, above its max_images {model.max_images}"


def _problem(job: ImageJob, plan: Plan) -> str:
    """What serve answers when no target can take the request (`service.why_nothing`)."""
    refusal = why_nothing(job, plan, None)
    if refusal.status == 503:  # the targets list gives each reason: without them here
        refusal = why_nothing(job, Plan(plan.route), None)
    return f"{refusal} (serve answers {refusal.status})"


def _resolution(snap: ConfigSnapshot, job: ImageJob, name: str) -> tuple[str, str]:
    model = job.model
    if model in (None, "", "auto"):
        if snap.routes.defaults.get(job.task):
            return "default", f"no model given: the default route for {job.task}"
        return "default", f"no model given and no default for {job.task}: the default for generate"
    if model in snap.routes.routes:
        return "route", f"'{model}' is a route in routes.yaml"
    if model in snap.direct:
        provider, _, upstream = name.partition("/")
        return "direct", f"'{model}' names provider '{provider}' model '{upstream}' directly"
    return "alias", f"'{model}' is an alias of route '{name}'"


def _skip_reason(snap: ConfigSnapshot, target: TargetSpec, reason: str) -> str:
    if reason == "no keys configured":
        env_name = target.provider.upper().replace("-", "_") + "_API_KEYS"
        hint = f"set {env_name}"
        if snap.routes.policy(target.provider).keys_file:
            hint += " or fill its keys_file"
        return f"{reason} ({hint})"
    return reason


def _first_key(snap: ConfigSnapshot, attempt: Attempt) -> str | None:
    """The key a fresh gateway uses first (a fresh pool: the first configured key)."""
    policy = snap.routes.policy(attempt.provider.id)
    return KeyPools().order(attempt.provider, policy)[0]


def _attempt_view(
    snap: ConfigSnapshot,
    job: ImageJob,
    attempt: Attempt,
    pos: int,
    breakers: Breakers,
    port: str,
) -> AttemptView:
    provider, model = attempt.provider, attempt.model
    task = provider.tasks[attempt.task]
    policy = snap.routes.policy(provider.id)
    key = _first_key(snap, attempt)
    fitted = fit_size(job.size, model.sizes)
    per_call = model.images_per_call or task.images_per_call
    return AttemptView(
        position=pos,
        route=attempt.route,
        provider=provider.id,
        model=model.name,
        priority=attempt.target.priority,
        weight=attempt.target.weight,
        strategy=snap.route(attempt.route).strategy,
        base_url=_base_url(provider, port),
        key=mask_key(key) if key is not None else None,
        keys=len(provider.auth.keys),
        key_selection=policy.key_selection,
        circuit=breakers.state(provider.id),
        size_requested=size_text(job.size),
        size_used=Size(*fitted).text,
        size_rule=describe_sizes(model.sizes),
        size_default=Size(*model.sizes.default).text,
        calls=call_counts(job.n, per_call),
        parallel=task.parallel,
        task=attempt.task,
        prompt=attempt.prompt,
    )


def _base_url(provider: ProviderSpec, port: str) -> str:
    """As serve computes it; an on-gateway upstream (the demo) is reached on the local port."""
    if provider.on_gateway:
        return f"http://127.0.0.1:{port}{provider.base_url}"
    return provider.base_url


def describe_sizes(rule: SizeRule) -> str:
    if rule.choices:
        return "one of " + ", ".join(f"{w}x{h}" for w, h in rule.choices)
    parts = []
    if rule.min is not None:
        parts.append(f"min {rule.min[0]}x{rule.min[1]}")
    if rule.max is not None:
        parts.append(f"max {rule.max[0]}x{rule.max[1]}")
    if rule.multiple_of > 1:
        parts.append(f"multiple of {rule.multiple_of}")
    if rule.max_pixels is not None:
        parts.append(f"at most {rule.max_pixels} pixels")
    return ", ".join(parts) or "any"


def _notes(
    snap: ConfigSnapshot, expl: Explanation, attempts: Sequence[Attempt], first: str
) -> list[str]:
    notes = [
        "circuit breakers: a fresh process has every circuit closed; a running gateway skips "
        "a provider whose circuit is open (GET /admin/keys shows them)",
    ]
    shuffled = rotated = False
    for name in snap.chain(first):
        route = snap.route(name)
        live = [t for t in route.targets if t.weight > 0]
        if route.strategy == "round_robin":
            rotated = rotated or len(live) > 1
        elif route.strategy == "weighted":
            shuffled = shuffled or len(live) > 1
        else:
            priorities = [t.priority for t in live]
            shuffled = shuffled or len(priorities) != len(set(priorities))
    if shuffled:
        notes.append(
            "order: targets of equal priority (all targets, for weighted) come in a weighted "
            "random order per request; shown is the most likely one (heaviest first)"
        )
    if rotated:
        notes.append("order: round_robin rotates the first target per request; shown: the first")
    if expl.attempts and expl.attempts[0].keys > 1:
        notes.append(
            "keys: the first attempt shows the first key of the pool; later requests rotate "
            "through the pool and a failing key moves on to the next one"
        )
    if attempts and len(expl.attempts[0].calls) > 1:
        view = expl.attempts[0]
        notes.append(
            f"calls: n={expl.job.n} is split into {len(view.calls)} calls {view.calls} "
            f"(up to {view.parallel} at once); the request shown is call 1 "
            "(later calls differ in n, call_index, and seed + index when a seed is given)"
        )
    if any(a.provider.on_gateway for a in attempts):
        notes.append(
            "on-gateway upstream (relative base_url): shown at http://127.0.0.1:<PIXGATE_PORT "
            "or 8080>; serve reaches it on the socket the client's request arrived on"
        )
    if expl.warnings:
        notes.append(f"config: {expl.warnings} warnings (pixgate lint shows them)")
    return notes


def load_image(path: str) -> InputImage:
    """An input image as the API would take it: bytes, and the mime sniffed from them."""
    from ..runtime.images.imagetypes import sniff

    with open(path, "rb") as fh:
        data = fh.read()
    mime = sniff(data)
    if mime is None:
        raise ValueError(f"{path}: not a PNG, JPEG, WEBP or GIF image")
    return InputImage(data, mime)
