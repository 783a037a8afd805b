"""Turn a client's model name into the ordered upstream attempts for one request."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ...config.loader import ConfigSnapshot
from ...dsl.spec import ModelSpec, ProviderSpec, RouteSpec, TargetSpec


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


@dataclass(frozen=True, slots=True)
class Skipped:
    target: TargetSpec
    reason: str


@dataclass(slots=True)
class Plan:
    route: RouteSpec
    attempts: list[Attempt] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class UnknownModel(LookupError):
    pass


class Router:
    """Holds the little runtime state routing needs (round-robin cursors, an RNG)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._rr: dict[tuple[str, int], Iterator[int]] = {}

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
        relayed = relay_route(snapshot, model, relay)
        if relayed is not None:
            plan = Plan(relayed)
            for target in relayed.targets:
                self._add(plan, snapshot, relayed, target, task, relay)
            return plan
        first = self.route_name(snapshot, model, task)
        plan = Plan(snapshot.route(first))
        for name in snapshot.chain(first):
            route = snapshot.route(name)
            for target in self.order(route):
                self._add(plan, snapshot, route, target, task, relay)
        return plan

    def _add(
        self,
        plan: Plan,
        snapshot: ConfigSnapshot,
        route: RouteSpec,
        target: TargetSpec,
        task: str,
        relay: str | None,
    ) -> None:
        provider = snapshot.providers.get(target.provider)
        model = provider.model(target.model) if provider else None
        if provider is None or model is None:
            plan.skipped.append(Skipped(target, "provider or model not loaded"))
        elif relay is not None and provider.id != relay:
            plan.skipped.append(Skipped(target, f"relay mode: the client's key is for {relay}"))
        elif target.weight <= 0:
            plan.skipped.append(Skipped(target, "weight 0 (disabled)"))
        elif not provider.available and relay is None:
            plan.skipped.append(Skipped(target, "no keys configured"))
        elif provider.on_gateway and not snapshot.routes.demo:
            plan.skipped.append(Skipped(target, "the built-in demo upstream is off (demo: false)"))
        elif (runs := serves(route, provider, model, task)) is None:
            plan.skipped.append(Skipped(target, f"does not support {task}"))
        else:
            prompt = route.variation_prompt if runs != task else None
            fmt = plan.route.response_format or model.response_format or "url"
            rehost = (
                route.rehost or snapshot.routes.policy(provider.id).rehost or provider.rehost_urls
            )
            plan.attempts.append(
                Attempt(route.name, target, provider, model, runs, prompt, fmt, rehost)
            )

    def order(self, route: RouteSpec) -> list[TargetSpec]:
        targets = list(route.targets)
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
