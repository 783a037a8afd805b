"""`pixgate explain`: a dry run of one image request against a config directory.

It builds the snapshot exactly as `serve` does (`build_snapshot`, the process environment),
asks the real `Router` for the plan, and renders the first attempt's upstream requests with the
real `build_request`, then prints what `serve` would do: which route, which targets in which
order and why the others are left out, how the size is mapped, and every HTTP request of the
first attempt. Nothing is sent anywhere.

What a dry run cannot know is shown as a placeholder: values earlier steps extract
(`<steps.submit.task_id>`), the request id and the per-call random seed. Keys are always masked
(`mask_key`): the real key never enters the rendering, a placeholder does, shown masked.
"""

from __future__ import annotations

import difflib
import json
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
from aiohttp.multipart import MultipartWriter, parse_content_disposition

from ..config.diagnostics import Diagnostic
from ..config.loader import ConfigSnapshot, build_snapshot
from ..dsl.sizes import Size, fit_size
from ..dsl.spec import ProviderSpec, SizeRule, StepSpec, TargetSpec
from ..runtime.breaker import Breakers
from ..runtime.context import base_context, call_context, call_counts
from ..runtime.job import ImageJob, InputImage
from ..runtime.keys import KeyPools, mask_key
from ..runtime.router import Attempt, Plan, Router, UnknownModel
from ..runtime.service import POLLING_DEADLINE, SYNC_DEADLINE
from ..runtime.upstream import Outgoing, build_request

DEFAULT_PORT = 8080
ELIDE_OVER = 64  # base64 strings and data URIs longer than this are shown by their length

# ---------------------------------------------------------------------------------------------
# The explanation
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TargetView:
    """One route target and whether this request would try it."""

    route: str
    provider: str
    model: str
    priority: int
    weight: float
    selected: bool
    reason: str
    position: int | None = None  # 1-based place in the attempt order

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "provider": self.provider,
            "model": self.model,
            "priority": self.priority,
            "weight": self.weight,
            "in": self.selected,
            "attempt": self.position,
            "reason": self.reason,
        }


@dataclass(slots=True)
class StepView:
    """One rendered step request, keys masked, unknowable values as placeholders."""

    name: str
    method: str = ""
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    timeout: float = 60.0
    placeholders: list[str] = field(default_factory=list)
    behaviour: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
            "body": self.body,
            "timeout_s": self.timeout,
            "placeholders": self.placeholders,
            "behaviour": self.behaviour,
            "notes": self.notes,
            "error": self.error,
        }


@dataclass(slots=True)
class AttemptView:
    position: int
    route: str
    provider: str
    model: str
    priority: int
    weight: float
    strategy: str
    base_url: str
    key: str | None  # masked
    keys: int
    key_selection: str
    circuit: str
    size_requested: str | None
    size_used: str
    size_rule: str
    size_default: str
    calls: list[int]
    parallel: int
    task: str = "generate"  # the provider task it runs (a variation may run as an edit)
    prompt: str | None = None  # replaces the client's prompt (the route's variation_prompt)
    steps: list[StepView] | None = None  # rendered for the first attempt (all with --all)

    @property
    def size_adjusted(self) -> bool:
        return self.size_requested is not None and self.size_requested != self.size_used

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "route": self.route,
            "provider": self.provider,
            "model": self.model,
            "priority": self.priority,
            "weight": self.weight,
            "strategy": self.strategy,
            "base_url": self.base_url,
            "key": self.key,
            "keys": self.keys,
            "key_selection": self.key_selection,
            "circuit": self.circuit,
            "size": {
                "requested": self.size_requested,
                "used": self.size_used,
                "adjusted": self.size_adjusted,
                "allowed": self.size_rule,
                "default": self.size_default,
            },
            "calls": self.calls,
            "parallel": self.parallel,
            "task": self.task,
            "prompt": self.prompt,
            "requests": None if self.steps is None else [s.as_dict() for s in self.steps],
        }


@dataclass(slots=True)
class Explanation:
    directory: str
    job: ImageJob
    images: list[dict[str, Any]] = field(default_factory=list)  # input files, for display
    version: str | None = None
    route: str | None = None
    resolved_by: str | None = None  # route | alias | direct | default
    resolution: str = ""
    strategy: str | None = None
    deadline: float | None = None
    fallbacks: list[str] = field(default_factory=list)
    targets: list[TargetView] = field(default_factory=list)
    attempts: list[AttemptView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: str | None = None
    suggestions: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    warnings: int = 0
    exit_code: int = 0
    secrets: list[str] = field(default_factory=list, repr=False)  # for `scrub`, never shown

    def as_dict(self) -> dict[str, Any]:
        job = self.job
        return {
            "ok": self.exit_code == 0,
            "exit_code": self.exit_code,
            "problem": self.problem,
            "suggestions": self.suggestions,
            "config": {
                "directory": self.directory,
                "version": self.version,
                "warnings": self.warnings,
                "diagnostics": [d.as_dict() for d in self.diagnostics],
            },
            "request": {
                "task": job.task,
                "model": job.model,
                "prompt": job.prompt,
                "size": _size_text(job.size),
                "n": job.n,
                "seed": job.seed,
                "response_format": job.response_format,
                "extra": job.extra,
                "images": self.images,
            },
            "route": None
            if self.route is None
            else {
                "name": self.route,
                "resolved_by": self.resolved_by,
                "resolution": self.resolution,
                "strategy": self.strategy,
                "deadline_s": self.deadline,
                "fallbacks": self.fallbacks,
            },
            "targets": [t.as_dict() for t in self.targets],
            "attempts": [a.as_dict() for a in self.attempts],
            "notes": self.notes,
        }


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
    attempts: list[Attempt] = []
    for attempt in plan.attempts:
        if job.n > attempt.model.max_n:
            reasons[id(attempt.target)] = f"n={job.n} is above its max_n {attempt.model.max_n}"
        elif len(job.images) > attempt.model.max_images:
            reasons[id(attempt.target)] = (
                f"{len(job.images)} input images, above its max_images {attempt.model.max_images}"
            )
        else:
            attempts.append(attempt)
            positions[id(attempt.target)] = len(attempts)
            reasons[id(attempt.target)] = f"attempt {len(attempts)} ({_why_in(job, attempt)})"
    for skipped in plan.skipped:
        reasons[id(skipped.target)] = _skip_reason(snap, skipped.target, skipped.reason)

    for route_name in _route_order(snap, route.name):
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
        expl.problem = _why_nothing(job, plan)
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


def _why_nothing(job: ImageJob, plan: Plan) -> str:
    """Mirrors `service._why_nothing`: the clearest reason, and what serve answers."""
    name = job.model or plan.route.name
    if plan.attempts:
        if any(job.n > a.model.max_n for a in plan.attempts):
            most = max(a.model.max_n for a in plan.attempts)
            return f"n must be at most {most} for model '{name}' (serve answers 400)"
        most = max(a.model.max_images for a in plan.attempts)
        return (
            f"model '{name}' takes at most {most} input images, got {len(job.images)} "
            "(serve answers 400)"
        )
    if plan.skipped and all(s.reason.startswith("does not support") for s in plan.skipped):
        return f"model '{name}' does not support {job.task} (serve answers 400)"
    return f"no upstream can serve '{plan.route.name}' for {job.task} right now (serve answers 503)"


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


def _route_order(snap: ConfigSnapshot, first: str) -> list[str]:
    """The route and its fallbacks, breadth first, as `Router.plan` visits them."""
    seen: list[str] = []
    queue = [first]
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.append(name)
        queue.extend(snap.route(name).fallbacks)
    return seen


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
        size_requested=_size_text(job.size),
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
    return ", ".join(parts) or "any"


def _size_text(size: tuple[int, int] | None) -> str | None:
    return None if size is None else f"{size[0]}x{size[1]}"


def _notes(
    snap: ConfigSnapshot, expl: Explanation, attempts: list[Attempt], first: str
) -> list[str]:
    notes = [
        "circuit breakers: a fresh process has every circuit closed; a running gateway skips "
        "a provider whose circuit is open (GET /admin/keys shows them)",
    ]
    shuffled = rotated = False
    for name in _route_order(snap, first):
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


# ---------------------------------------------------------------------------------------------
# Rendering the requests
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"PXGATE0PH(\d{4})0")
_DATA_URI = re.compile(r"data:([\w.+/-]+);base64,[A-Za-z0-9+/=]+")
_B64_RUN = re.compile(rf"[A-Za-z0-9+/]{{{ELIDE_OVER + 1},}}={{0,2}}")
_ADDED_BY_CLIENT = "(set by the HTTP client)"
_MEANINGS = {
    "<random_seed>": "a fresh random 31-bit integer per call",
    "<request_id>": "the id of the client's request (x-request-id)",
}


class Placeholders:
    """URL-safe tokens standing in for values a dry run cannot know (or must not show); they
    survive templates, percent-encoding and JSON, and are swapped for their display text."""

    def __init__(self) -> None:
        self.display: list[str] = []
        self.shown: list[str] = []  # display texts substituted so far, in order

    def token(self, display: str) -> str:
        self.display.append(display)
        return f"PXGATE0PH{len(self.display) - 1:04d}0"

    def text(self, value: str) -> str:
        return _TOKEN.sub(self._show, value)

    def _show(self, match: re.Match[str]) -> str:
        shown = self.display[int(match.group(1))]
        self.shown.append(shown)
        return shown

    def tree(self, value: Any) -> Any:
        """A JSON value for display: tokens replaced, long base64 and data URIs elided."""
        if isinstance(value, str):
            return elide(self.text(value))
        if isinstance(value, dict):
            return {k: self.tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v) for v in value]
        return value


def elide(text: str) -> str:
    """`<base64, 123456 chars>` for long base64 runs, `<data:image/png;base64, N chars>` for
    data URIs; shorter ones stay."""

    def data_uri(m: re.Match[str]) -> str:
        whole = m.group(0)
        if len(whole) <= ELIDE_OVER:
            return whole
        return f"<data:{m.group(1)};base64, {len(whole)} chars>"

    text = _DATA_URI.sub(data_uri, text)
    return _B64_RUN.sub(lambda m: f"<base64, {len(m.group(0))} chars>", text)


def render_steps(job: ImageJob, attempt: Attempt, base_url: str, key: str | None) -> list[StepView]:
    """Every step of one call (the first) of one attempt, as serve would send it."""
    provider, model = attempt.provider, attempt.model
    task = provider.tasks[attempt.task]
    ph = Placeholders()
    key_token = ph.token(mask_key(key)) if key is not None else None
    size = Size(*fit_size(job.size, model.sizes))
    per_call = model.images_per_call or task.images_per_call
    count = call_counts(job.n, per_call)[0]
    base = base_context(job, attempt, size, key_token, ph.token("<request_id>"))
    ctx = call_context(base, job, 0, count, ph.token("<random_seed>"))
    steps: dict[str, dict[str, Any]] = {}
    ctx["steps"] = steps
    views: list[StepView] = []
    for step in task.steps:
        views.append(_render_step(step, ctx, ph, base_url, provider, key_token))
        steps[step.name] = {
            name: ph.token(f"<steps.{step.name}.{name}>") for name, _ in step.extract
        }
    return views


def _render_step(
    step: StepSpec,
    ctx: dict[str, Any],
    ph: Placeholders,
    base_url: str,
    provider: ProviderSpec,
    key: str | None,
) -> StepView:
    view = StepView(step.name, behaviour=_behaviour(step))
    notes: list[str] = []
    mark = len(ph.shown)
    try:
        out = build_request(step.request, ctx, base_url, provider.auth, key)
    except Exception as first:  # a template that computes with a placeholder, or a real bug
        try:
            fixed = {**ctx, "random_seed": 1234567890}
            out = build_request(step.request, fixed, base_url, provider.auth, key)
        except Exception:
            view.error = f"{type(first).__name__}: {first}"
            return view
        notes.append("random_seed is shown as 1234567890 (a template computes with it)")
    view.method = out.method
    view.timeout = out.timeout
    view.url = _display_url(step, ctx, out, ph)
    view.headers = {k: ph.text(v) for k, v in out.headers.items()}
    view.body, content_type, body_notes = _display_body(step, out, ph)
    notes += body_notes
    if content_type and not any(k.lower() == "content-type" for k in view.headers):
        view.headers["Content-Type"] = content_type
        notes.append(f"Content-Type {_ADDED_BY_CLIENT}")
    view.placeholders = [p for p in dict.fromkeys(ph.shown[mark:]) if p.startswith("<")]
    for name, meaning in _MEANINGS.items():
        if name in view.placeholders:
            notes.append(f"{name} is {meaning}")
    later = [p for p in view.placeholders if p.startswith("<steps.")]
    if later:
        notes.append(
            "depends on values an earlier step returns, unknown in a dry run: "
            + ", ".join(later)
            + " (shown as placeholders)"
        )
    view.notes = notes
    return view


def _display_url(step: StepSpec, ctx: Mapping[str, Any], out: Outgoing, ph: Placeholders) -> str:
    url = ph.text(str(out.url))
    if step.request.url is not None:
        # A URL handed over by an earlier step is absolute: it does not sit under base_url.
        rendered = str(step.request.url.render(ctx))
        if _TOKEN.match(rendered):
            query = out.url.raw_query_string
            url = ph.text(rendered) + (f"?{ph.text(query)}" if query else "")
    return url


def _display_body(
    step: StepSpec, out: Outgoing, ph: Placeholders
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """(body for display, the Content-Type the client adds if none is set, notes)."""
    data = out.data
    request = step.request
    if data is None:
        return None, None, []
    if request.json is not None and isinstance(data, bytes):
        return {"kind": "json", "json": ph.tree(orjson.loads(data))}, "application/json", []
    if isinstance(data, dict):
        fields = {str(k): elide(ph.text(str(v))) for k, v in data.items()}
        return {"kind": "form", "fields": fields}, "application/x-www-form-urlencoded", []
    if isinstance(data, aiohttp.FormData):
        payload = data()
        if isinstance(payload, MultipartWriter):
            parts = [_part(p[0], ph) for p in payload]
            body = {"kind": "multipart", "parts": parts}
            return body, "multipart/form-data; boundary=<random>", []
        text = payload.decode() if hasattr(payload, "decode") else ""
        fields = {k: elide(ph.text(v)) for k, v in parse_qsl(text, keep_blank_values=True)}
        return (
            {"kind": "form", "fields": fields},
            "application/x-www-form-urlencoded",
            ["multipart without any file part: the HTTP client sends it url-encoded"],
        )
    if isinstance(data, bytes):
        body = {"kind": "text", "text": elide(ph.text(data.decode("utf-8", errors="replace")))}
        return body, "application/octet-stream", []
    return {"kind": "other", "text": repr(data)[:200]}, None, []


def _part(payload: Any, ph: Placeholders) -> dict[str, Any]:
    headers = payload.headers
    _, params = parse_content_disposition(headers.get("Content-Disposition"))
    part: dict[str, Any] = {
        "name": params.get("name"),
        "content_type": headers.get("Content-Type"),
        "size": payload.size,
    }
    if "filename" in params:
        part["filename"] = params["filename"]
    else:
        try:
            part["value"] = elide(ph.text(payload.decode()))
        except (UnicodeDecodeError, AttributeError):
            part["value"] = None
    return part


def _behaviour(step: StepSpec) -> list[str]:
    out: list[str] = []
    if step.until is not None:
        line = f"polls until `{step.until.source}` every {format_duration(step.every)}"
        if step.backoff != 1.0:
            line += f" (x{step.backoff:g} each time, at most {format_duration(step.max_every)})"
        out.append(line + f", for at most {format_duration(step.timeout)}")
        if step.fail_if is not None:
            out.append(f"fails ({step.fail_kind}) when `{step.fail_if.source}`")
    if step.stream is not None:
        stream = step.stream
        until = f"until event `{stream.done_event}`" if stream.done_event else "to its end"
        line = f"reads an event stream {until}"
        if stream.error_event:
            line += f" (`{stream.error_event}` means failure)"
        out.append(line)
        if stream.partial_event:
            out.append(f"previews from `{stream.partial_event}` events (when the client streams)")
        if stream.image_event:
            out.append(f"finished images from `{stream.image_event}` events")
    if step.response == "bytes":
        out.append("the answer's body is the image (response: bytes)")
    for name, expr in step.extract:
        out.append(f"extracts {name} = `{expr.source}` (steps.{step.name}.{name})")
    if step.images is not None:
        out.append(f"images from `{step.images.source}`")
    return out


def format_duration(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def format_json(expl: Explanation) -> str:
    return scrub(json.dumps(expl.as_dict(), indent=2, ensure_ascii=False), expl.secrets)


def format_text(expl: Explanation) -> str:
    secrets = expl.secrets
    lines: list[str] = []
    add = lines.append
    job = expl.job
    if expl.diagnostics:
        add(f"pixgate explain: {expl.problem}:")
        lines += [f"  {d.format()}" for d in expl.diagnostics]
        return scrub("\n".join(lines), secrets)
    add(f"config: {expl.directory} (version {expl.version})")
    req = f"request: {job.task} model={job.model or '(none)'} prompt={job.prompt!r}"
    req += f" size={_size_text(job.size) or 'auto'} n={job.n}"
    if job.seed is not None:
        req += f" seed={job.seed}"
    add(req)
    for image in expl.images:
        add(f"  input image: {image['file']} ({image['mime']}, {image['bytes']} bytes)")
    if expl.route is None:
        add(f"route: none: {expl.problem}")
        if expl.suggestions:
            add("  did you mean: " + ", ".join(expl.suggestions))
        return scrub("\n".join(lines), secrets)
    add(f"route: {expl.route} ({expl.resolution})")
    details = f"  strategy: {expl.strategy}"
    if expl.deadline is not None:
        details += f", deadline {format_duration(expl.deadline)}"
    if expl.fallbacks:
        details += f", fallbacks: {', '.join(expl.fallbacks)}"
    add(details)
    add("")
    add("targets:")
    for t in expl.targets:
        mark = "in " if t.selected else "out"
        add(
            f"  {mark} {t.provider}/{t.model} (route {t.route}, priority {t.priority}, "
            f"weight {t.weight:g}): {t.reason}"
        )
    if expl.attempts:
        add("")
        add("attempts, in order:")
    for a in expl.attempts:
        add(
            f"  {a.position}. {a.provider}: model {a.model} (route {a.route}, "
            f"strategy {a.strategy}, priority {a.priority}, weight {a.weight:g})"
        )
        if a.key is None:
            add("     key: none (this provider needs none and has none)")
        else:
            add(f"     key: {a.key} (1 of {a.keys}, {a.key_selection})")
        add(f"     circuit: {a.circuit} (fresh process)")
        if a.task != job.task:
            add(f"     runs its {a.task} task with the route's variation_prompt {a.prompt!r}")
        asked = a.size_requested or f"auto (default {a.size_default})"
        size = f"{asked} -> {a.size_used}"
        size += f" (allowed: {a.size_rule})"
        if a.size_adjusted:
            size += "; mapped to the nearest allowed size, reported in x-pixgate-size"
        add(f"     size: {size}")
        images = "+".join(str(c) for c in a.calls)
        noun = "image" if a.calls == [1] else "images"
        add(f"     calls: {len(a.calls)} ({images} {noun}), up to {a.parallel} at once")
    if expl.problem:
        add("")
        add(f"problem: {expl.problem}")
    for a in expl.attempts:
        if a.steps is None:
            continue
        add("")
        add(f"upstream requests of attempt {a.position} ({a.provider}, call 1), nothing sent:")
        for s in a.steps:
            lines += _step_lines(s)
    if expl.notes:
        add("")
        add("notes:")
        lines += [f"  - {n}" for n in expl.notes]
    return scrub("\n".join(lines), secrets)


def _step_lines(step: StepView) -> list[str]:
    lines = [f"  step {step.name}:"]
    if step.error is not None:
        return [*lines, f"    cannot render: {step.error}"]
    lines.append(f"    {step.method} {step.url}")
    lines += [f"    {k}: {v}" for k, v in step.headers.items()]
    body = step.body
    if body is not None:
        lines.append("    body:")
        lines += ["      " + line for line in _body_lines(body)]
    lines.append(f"    (timeout {format_duration(step.timeout)})")
    lines += [f"    -> {b}" for b in step.behaviour]
    lines += [f"    note: {n}" for n in step.notes]
    return lines


def _body_lines(body: dict[str, Any]) -> list[str]:
    kind = body["kind"]
    if kind == "json":
        return json.dumps(body["json"], indent=2, ensure_ascii=False).splitlines()
    if kind == "form":
        return [f"{k}={v}" for k, v in body["fields"].items()] or ["(empty form)"]
    if kind == "multipart":
        out = []
        for part in body["parts"]:
            if "filename" in part:
                out.append(
                    f"part {part['name']}: file {part['filename']} "
                    f"({part['content_type']}, {part['size']} bytes)"
                )
            else:
                out.append(f"part {part['name']}: {part['value']!r}")
        return out
    return str(body.get("text", "")).splitlines() or [""]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Last line of defence: no configured key appears in the output, whatever a template did."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 8:
            text = text.replace(secret, mask_key(secret))
    return text


def load_image(path: str) -> InputImage:
    """An input image as the API would take it: bytes, and the mime sniffed from them."""
    from ..runtime.imagetypes import sniff

    with open(path, "rb") as fh:
        data = fh.read()
    mime = sniff(data)
    if mime is None:
        raise ValueError(f"{path}: not a PNG, JPEG, WEBP or GIF image")
    return InputImage(data, mime)


Formatter = Callable[[Explanation], str]
FORMATTERS: dict[str, Formatter] = {"text": format_text, "json": format_json}
