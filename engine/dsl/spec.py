"""Compiled provider and route objects: everything the runtime ever reads from config."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..pricing import Price
from .expressions import Expr, first_true
from .origins import OriginPattern
from .templates import Renderable
from .trees import MapNode

if TYPE_CHECKING:
    from .sizes import Size

TASKS = ("generate", "edit", "blend", "variation")
FAILURE_KINDS = (
    "rate_limited",
    "bad_key",
    "quota",
    "content_policy",
    "bad_request",
    "upstream",
    "timeout",
)


@dataclass(frozen=True, slots=True)
class SizeRule:
    """What sizes a model accepts; the engine maps a client's size to the nearest one."""

    choices: tuple[tuple[int, int], ...] = ()
    min: tuple[int, int] | None = None
    max: tuple[int, int] | None = None
    multiple_of: int = 1
    default: tuple[int, int] = (1024, 1024)
    max_pixels: int | None = None  # a cap on width x height (upstreams that cap the area)
    # requested size -> the fitted Size (sizes.fitted): kept here, so that finding one on a
    # request hashes no rule (a frozen dataclass's hash is Python code)
    fits: dict[tuple[int, int] | None, Size] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    tasks: frozenset[str]
    sizes: SizeRule
    max_n: int
    params: dict[str, Any]
    title: str = ""
    images_per_call: int | None = None  # overrides the task's when set
    max_images: int = 16  # input images one request may carry (edit, blend)
    response_format: str | None = None  # answer `url` or `b64_json` when the client names none
    pricing: Price | None = None  # list price; None: unpriced (lint W-warns when routed)


@dataclass(frozen=True, slots=True)
class PartSpec:
    name: str
    value: Renderable | None = None
    file: Renderable | None = None
    filename: Renderable | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class RequestSpec:
    method: str
    path: Renderable | None
    url: Renderable | None
    headers: MapNode
    query: MapNode
    json: Renderable | None = None
    form: MapNode | None = None
    multipart: tuple[PartSpec, ...] | None = None
    body: Renderable | None = None
    content_type: str | None = None
    timeout: float = 60.0
    auth: bool = True  # `auth: false`: this request never carries the provider's key
    auth_to: tuple[OriginPattern, ...] = ()  # more origins this request's key may go to


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """How to read an event stream. `done_event` ends the step (its data is the body); without
    it the stream ends at EOF (or `data: [DONE]`) and the last `image_event`'s data is the body.
    `partial_event` carries a preview image, `image_event` a final one (both delivered as they
    arrive to a streaming client, and the final ones collected as the call's result)."""

    done_event: str | None = None
    error_event: str | None = None
    progress_event: str | None = None
    partial_event: str | None = None
    image_event: str | None = None
    partial_image: Expr | None = None  # over a partial event's data: the preview image
    partial_index: Expr | None = None  # over a partial event's data: its 0-based index
    image: Expr | None = None  # over an image event's data: the final image(s)


@dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    request: RequestSpec
    response: str = "auto"
    stream: StreamSpec | None = None
    extract: tuple[tuple[str, Expr], ...] = ()
    until: Expr | None = None
    fail_if: Expr | None = None
    fail_kind: str = "upstream"
    every: float = 2.0
    first_after: float | None = None  # see first_wait
    backoff: float = 1.0
    max_every: float = 30.0
    timeout: float = 600.0
    error_message: Expr | None = None
    images: Expr | None = None
    image_kind: str = "auto"
    revised_prompt: Expr | None = None
    usage: Expr | None = None
    progress: Expr | None = None
    when: Expr | None = None  # JMESPath over the template context: run only when truthy
    # It polls (has `until`): read for every step of every call, so set once here.
    polls: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "polls", self.until is not None)

    def first_wait(self, first_step: bool) -> float:
        """Seconds before the first poll: `first_after`, else one interval after an earlier
        step (a job just submitted is not done yet), none when the task starts by polling."""
        if self.first_after is not None:
            return self.first_after
        return 0.0 if first_step else self.every

    @property
    def long_running(self) -> bool:
        """Polls, or always answers with an event stream (a queue such as Gradio's): the
        request gets the long deadline. A step that streams only when the client does
        (`response: auto`) keeps the short one."""
        return self.polls or (self.stream is not None and self.response == "sse")


@dataclass(frozen=True, slots=True)
class FanOutSpec:
    """How a fan-out step finds its items and how many it runs."""

    items: Expr  # over the template context: the list
    name: str = "item"  # the element's name in the sub-steps
    limit: int | None = None  # at most this many items (None: all)
    limit_n: bool = False  # at most the call's n
    parallel: int = 4


@dataclass(frozen=True, slots=True)
class FanOutStep:
    """Runs `steps` once per item (items in parallel up to a bound), images in item order."""

    name: str
    fan_out: FanOutSpec
    steps: tuple[StepSpec, ...]
    when: Expr | None = None

    @property
    def long_running(self) -> bool:
        return any(step.long_running for step in self.steps)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    steps: tuple[StepSpec | FanOutStep, ...]
    images_per_call: int = 1
    parallel: int = 4
    cancel: StepSpec | None = None  # sent when a client cancels the job mid-steps
    # Some step polls or streams for long (the long deadline); read on every request, so
    # computed once here.
    polls: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "polls", any(step.long_running for step in self.steps))


@dataclass(frozen=True, slots=True)
class ErrorRule:
    when: Expr
    kind: str
    message: Expr | None = None


@dataclass(frozen=True, slots=True)
class AuthSpec:
    header: str | None = None
    value: Renderable | None = None
    query: str | None = None
    keys: tuple[str, ...] = ()
    key_pattern: re.Pattern[str] | None = None
    required: bool = True
    send_to: tuple[OriginPattern, ...] = ()  # origins besides base_url's that get the key


@dataclass(frozen=True, slots=True)
class InputsSpec:
    """What a provider accepts as input images (`inputs:`); the engine converts to it."""

    format: str | None = None  # png | jpeg | webp
    max_side: int | None = None
    max_bytes: int | None = None
    mask: str | None = None  # alpha | white_edit | black_edit


PROVIDER_KINDS = ("image", "chat")


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    id: str
    title: str
    base_url: str
    auth: AuthSpec
    models: dict[str, ModelSpec]
    tasks: dict[str, TaskSpec]
    errors: tuple[ErrorRule, ...]
    error_message: Expr
    rehost_urls: bool = False
    # result URLs from these origins skip the SSRF guard (a self-hosted upstream's files)
    private_origins: tuple[OriginPattern, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    description: str = ""
    # "image": models and tasks, routable. "chat": only base_url and auth, for an
    # OpenAI-compatible chat model (the prompt optimizer); no models, never routed.
    kind: str = "image"
    # Relay clients may name model ids the file does not list: served like this listed one.
    any_model: str | None = None
    inputs: InputsSpec | None = None  # None: input images go as the client sent them
    # The index of the first `errors` rule whose `when` holds for an answer's envelope, -1
    # when none does: one generated function for them all, derived here.
    first_error: Callable[[Any], int] = field(init=False, repr=False, compare=False)
    # Whether an `errors` rule may read the envelope's `headers`: only then are an answer's
    # headers copied into it (lower-cased, as rules name them).
    errors_read_headers: bool = field(init=False, repr=False, compare=False)
    # The base URL is relative: this gateway itself serves the upstream (the demo). Read on
    # every attempt, so set once here.
    on_gateway: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_error", first_true([r.when for r in self.errors]))
        rules = [e for r in self.errors for e in (r.when, r.message) if e is not None]
        object.__setattr__(self, "errors_read_headers", any(e.may_read("headers") for e in rules))
        object.__setattr__(self, "on_gateway", self.base_url.startswith("/"))

    def model(self, name: str) -> ModelSpec | None:
        """The listed model, else (with `any_model`) an unlisted id served like that one."""
        found = self.models.get(name)
        if found is None and self.any_model is not None:
            found = dataclasses.replace(self.models[self.any_model], name=name, title=name)
        return found

    @property
    def available(self) -> bool:
        """Routable: it has keys, or needs none."""
        return bool(self.auth.keys) or not self.auth.required


@dataclass(frozen=True, slots=True)
class TargetSpec:
    provider: str
    model: str
    weight: float = 1.0
    priority: int = 0
    pricing: Price | None = None  # overrides the model's price on this route


@dataclass(frozen=True, slots=True)
class OptimizerSpec:
    """An OpenAI-compatible chat model that rewrites the prompt before generation."""

    provider: str
    model: str
    system: str
    reasoning: bool = False  # strip <think>...</think> and reasoning_content from its answer
    timeout: float = 15.0


DEFAULT_OPTIMIZER_SYSTEM = (
    "Rewrite the user's image request as one detailed, vivid prompt for an image generation "
    "model. Keep the user's language, subject and intent; add composition, lighting and style "
    "details. Answer with the prompt only."
)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str
    targets: tuple[TargetSpec, ...]
    strategy: str = "priority"
    fallbacks: tuple[str, ...] = ()
    timeout: float | None = None
    description: str = ""
    failover_on: frozenset[str] = frozenset()  # final kinds that may still try another target
    variation_prompt: str | None = None  # variations may use an edit task with this prompt
    optimizer: OptimizerSpec | None = None
    chat_context_edit: bool = True  # a chat follow-up without an image edits the last image
    chat_image_format: str = "url"  # or "data_uri": how chat replies embed images
    response_format: str | None = None  # the default for the route's every target
    rehost: bool = False  # URL results are stored and served from the gateway's storage
    pricing: Price | None = None  # overrides the models' prices on this route
    resubmit_on_loss: bool = False  # a lost async job that cannot resume is sent again once
    # The targets grouped by priority, highest first (derived here, not per request).
    tiers: tuple[tuple[TargetSpec, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = sorted({t.priority for t in self.targets}, reverse=True)
        tiers = tuple(tuple(t for t in self.targets if t.priority == p) for p in levels)
        object.__setattr__(self, "tiers", tiers)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5  # consecutive upstream/timeout failures that open the circuit
    cooldown: float = 30.0  # seconds it stays open before one probe is let through


@dataclass(frozen=True, slots=True)
class ProviderPolicy:
    """Runtime behaviour for one provider's keys, set in routes.yaml `providers:`."""

    keys_file: str | None = None
    key_selection: str = "round_robin"  # or least_recently_used
    max_concurrency_per_key: int | None = None
    quota_reset: float = 3600.0
    bad_key_reprobe: float = 3600.0
    max_cooldown: float = 300.0
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    rehost: bool = False  # URL results are stored and served from the gateway's storage


DEFAULT_POLICY = ProviderPolicy()


@dataclass(frozen=True, slots=True)
class StateSpec:
    """routes.yaml `state:`: where runtime state lives (read at start, not on reload)."""

    redis_url: str | None = None
    prefix: str | None = None
    timeout: float | None = None
    lease_ttl: float | None = None


@dataclass(frozen=True, slots=True)
class CorsSpec:
    """Which browser pages (origins) may call the API, set in routes.yaml `cors:`. Bearer
    keys are not cookies, so by default any origin may call /v1/*; never /admin."""

    enabled: bool = True
    allow_origins: frozenset[str] = frozenset({"*"})
    allow_methods: tuple[str, ...] = ("GET", "POST")
    allow_headers: tuple[str, ...] = ("*",)  # `*`: whatever the preflight asks for
    expose_headers: tuple[str, ...] = ("x-request-id", "x-pixgate-*", "retry-after")
    max_age: float = 600.0
    paths: tuple[str, ...] = ("/v1/",)

    def applies(self, path: str) -> bool:
        return (
            self.enabled
            and not path.startswith("/admin")
            and any(path.startswith(p) for p in self.paths)
        )

    def allows(self, origin: str) -> bool:
        return "*" in self.allow_origins or origin in self.allow_origins


@dataclass(frozen=True, slots=True)
class RoutesSpec:
    routes: dict[str, RouteSpec]
    aliases: dict[str, str]
    defaults: dict[str, str]
    demo: bool = True
    backend: bool = True
    relay: bool = False
    direct_models: bool = True
    policies: dict[str, ProviderPolicy] = field(default_factory=dict)
    state: StateSpec = field(default_factory=StateSpec)
    cors: CorsSpec = field(default_factory=CorsSpec)

    def policy(self, provider_id: str) -> ProviderPolicy:
        return self.policies.get(provider_id, DEFAULT_POLICY)
