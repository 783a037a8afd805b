"""Turn a client's model name into the ordered upstream attempts for one request."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ...config.loader import ConfigSnapshot
from ...dsl.spec import (
    DEFAULT_POLICY,
    ModelSpec,
    ProviderPolicy,
    ProviderSpec,
    RouteSpec,
    TargetSpec,
)


@dataclass(frozen=True, slots=True)
class Attempt:
    route: str
    target: TargetSpec
    provider: ProviderSpec
    model: ModelSpec
    task: str  # the provider task to run (a variation may run as an edit)
    prompt: str | None = None  # replaces the client's prompt (variation through edit)
    # The answer's format when the client names none: the route the client named, else the
    # model, else `url`.
    response_format: str = "url"
    rehost: bool = False  # store URL results (route, routes.yaml provider policy or file)
    # The provider's routes.yaml policy in this snapshot (read on every attempt).
    policy: ProviderPolicy = DEFAULT_POLICY

    @property
    def polls(self) -> bool:
        """Its task polls or streams for long (the long deadline)."""
        return self.provider.tasks[self.task].polls


@dataclass(frozen=True, slots=True)
class Skipped:
    target: TargetSpec
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """A request's ordered attempts and the targets skipped. A plan whose order no route of
    its chain draws is made once per snapshot and shared: it is never changed."""

    route: RouteSpec
    attempts: tuple[Attempt, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    # Read on every request, so found once here: the largest n and number of input images
    # that every attempt takes, and whether any attempt's task polls (or streams) for long.
    max_n: int = field(init=False, compare=False, repr=False)
    max_images: int = field(init=False, compare=False, repr=False)
    polls: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        models = [a.model for a in self.attempts]
        object.__setattr__(self, "max_n", min((m.max_n for m in models), default=0))
        object.__setattr__(self, "max_images", min((m.max_images for m in models), default=0))
        object.__setattr__(self, "polls", any(a.polls for a in self.attempts))


class UnknownModel(LookupError):
    pass


# What one target of a route is for a request: an attempt, or why it is skipped.
Verdict = Attempt | Skipped
# A route chain's verdicts for one (first route, task, relay): per route name, per target (by
# identity: the snapshot holds every TargetSpec for as long as the table lives).
VerdictTable = dict[str, dict[int, Verdict]]


@dataclass(frozen=True, slots=True)
class _Chain:
    verdicts: VerdictTable
    fixed: Plan | None  # the plan itself, when no route of the chain draws an order


class Router:
    """Holds the little runtime state routing needs (round-robin cursors, an RNG), and the
    verdicts of the last config snapshot's targets: whether a target can take a task depends
    on the snapshot alone, so it is worked out once per snapshot, not per request. Only the
    order is drawn per request, and where no route of the chain draws one (a single target,
    priority tiers of one), the whole plan is made once per snapshot too."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._rr: dict[tuple[str, int], Iterator[int]] = {}
        # Keyed on the snapshot object itself: a reload makes a new one, and so new tables.
        self._tables: tuple[ConfigSnapshot | None, dict[tuple[str, str, str | None], _Chain]] = (
            None,
            {},
        )
        # The fixed plans of that snapshot by the model name a client gave (only names that
        # resolve: routes, aliases, direct targets, or none) and task: most requests' plan
        # in one look-up.
        self._fixed: dict[tuple[str | None, str], Plan] = {}

    def route_name(self, snapshot: ConfigSnapshot, model: str | None, task: str) -> str:
        if model in (None, "", "auto"):
            name = snapshot.routes.defaults.get(task) or snapshot.routes.defaults.get("generate")
            if name is None:
                raise UnknownModel("no model given and no default route for this task")
            return name
        assert model is not None
        name = snapshot.resolve_model(model)
        if name is None:
            raise UnknownModel(f"The model '{model}' does not exist")
        return name

    def plan(
        self, snapshot: ConfigSnapshot, model: str | None, task: str, relay: str | None = None
    ) -> Plan:
        """Ordered attempts. With `relay` (a provider id), only that provider's targets count
        and it needs no keys of its own: the client brought one."""
        if relay is None and self._tables[0] is snapshot:
            fixed = self._fixed.get((model, task))
            if fixed is not None:
                return fixed
        relayed = relay_route(snapshot, model, relay) if relay is not None else None
        if relayed is not None:  # a route of its own, made for this request
            return _plan(
                relayed,
                [verdict(snapshot, relayed, relayed, t, task, relay) for t in relayed.targets],
            )
        first = self.route_name(snapshot, model, task)
        chain = self._chain(snapshot, first, task, relay)
        if chain.fixed is not None:
            if relay is None:
                self._fixed[(model, task)] = chain.fixed
            return chain.fixed
        return self._ordered(snapshot, first, chain.verdicts)

    def _ordered(self, snapshot: ConfigSnapshot, first: str, table: VerdictTable) -> Plan:
        found = [
            table[name][id(target)]
            for name in snapshot.chain(first)
            for target in self.order(snapshot.route(name))
        ]
        return _plan(snapshot.route(first), found)

    def _chain(self, snapshot: ConfigSnapshot, first: str, task: str, relay: str | None) -> _Chain:
        """The verdicts of the chain from `first`, from this snapshot's cache. Its keys are
        names the snapshot defines (routes, tasks, provider ids), so it stays bounded."""
        if self._tables[0] is not snapshot:
            self._tables = (snapshot, {})
            self._fixed = {}
        tables = self._tables[1]
        chain = tables.get((first, task, relay))
        if chain is None:
            head = snapshot.route(first)
            table: VerdictTable = {}
            for name in snapshot.chain(first):
                route = snapshot.route(name)
                table[name] = {
                    id(t): verdict(snapshot, head, route, t, task, relay) for t in route.targets
                }
            fixed = all(fixed_order(snapshot.route(n)) for n in snapshot.chain(first))
            chain = tables[(first, task, relay)] = _Chain(
                table, self._ordered(snapshot, first, table) if fixed else None
            )
        return chain

    def order(self, route: RouteSpec) -> list[TargetSpec]:
        targets = list(route.targets)
        if len(targets) < 2:  # one order only, whatever the strategy
            return targets
        if route.strategy == "round_robin":
            cursor = self._rr.setdefault(
                (route.name, len(targets)), itertools.cycle(range(len(targets)))
            )
            start = next(cursor)
            return targets[start:] + targets[:start]
        if route.strategy == "weighted":
            return self._weighted(targets)
        return [t for tier in route.tiers for t in self._weighted(tier)]

    def _weighted(self, targets: Sequence[TargetSpec]) -> list[TargetSpec]:
        """A random order where earlier places go to heavier targets (weight 0 last; skipped)."""
        live = [t for t in targets if t.weight > 0]
        dead = [t for t in targets if t.weight <= 0]
        if len(live) < 2:  # one order only: no draw
            return live + dead
        # Efraimidis-Spirakis: sort by u^(1/w), a weighted random permutation in one pass.
        keyed = sorted(live, key=lambda t: self.rng.random() ** (1.0 / t.weight), reverse=True)
        return keyed + dead


def _plan(route: RouteSpec, found: Sequence[Verdict]) -> Plan:
    attempts = tuple(v for v in found if isinstance(v, Attempt))
    return Plan(route, attempts, tuple(v for v in found if isinstance(v, Skipped)))


def fixed_order(route: RouteSpec) -> bool:
    """Whether `Router.order` has one answer for `route`: no cursor to move, no draw."""
    if len(route.targets) < 2:
        return True
    if route.strategy == "round_robin":
        return False
    groups = (route.targets,) if route.strategy == "weighted" else route.tiers
    return all(sum(t.weight > 0 for t in group) < 2 for group in groups)


def verdict(
    snapshot: ConfigSnapshot,
    head: RouteSpec,
    route: RouteSpec,
    target: TargetSpec,
    task: str,
    relay: str | None,
) -> Verdict:
    """What `target` of `route` is for `task` (`head`: the route the client named, whose
    response_format comes first). Depends on the snapshot alone, never on the request."""
    provider = snapshot.providers.get(target.provider)
    model = provider.model(target.model) if provider else None
    if provider is None or model is None:
        return Skipped(target, "provider or model not loaded")
    if relay is not None and provider.id != relay:
        return Skipped(target, f"relay mode: the client's key is for {relay}")
    if target.weight <= 0:
        return Skipped(target, "weight 0 (disabled)")
    if not provider.available and relay is None:
        return Skipped(target, "no keys configured")
    if provider.on_gateway and not snapshot.routes.demo:
        return Skipped(target, "the built-in demo upstream is off (demo: false)")
    runs = serves(route, provider, model, task)
    if runs is None:
        return Skipped(target, f"does not support {task}")
    prompt = route.variation_prompt if runs != task else None
    fmt = head.response_format or model.response_format or "url"
    policy = snapshot.routes.policy(provider.id)
    rehost = route.rehost or policy.rehost or provider.rehost_urls
    return Attempt(route.name, target, provider, model, runs, prompt, fmt, rehost, policy)


def relay_route(snapshot: ConfigSnapshot, model: str | None, relay: str | None) -> RouteSpec | None:
    """A relay client may name its provider's own model ids (any id, when the file has
    `any_model`), as it would upstream. Route and alias names come first."""
    if relay is None or not model or snapshot.resolve_model(model) is not None:
        return None
    provider = snapshot.providers.get(relay)
    if provider is None or provider.model(model) is None:
        return None
    return RouteSpec(name=f"{relay}/{model}", targets=(TargetSpec(relay, model),))


def serves(route: RouteSpec, provider: ProviderSpec, model: ModelSpec, task: str) -> str | None:
    """The provider task that does `task` for this model: the task itself, or `edit` for a
    variation when the route gives a variation prompt; None when the model cannot."""
    if task in model.tasks and task in provider.tasks:
        return task
    variation_by_edit = task == "variation" and bool(route.variation_prompt)
    if variation_by_edit and "edit" in model.tasks and "edit" in provider.tasks:
        return "edit"
    return None
