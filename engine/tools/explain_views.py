"""What `pixgate explain` reports: the target, attempt and step views and their JSON shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config.diagnostics import Diagnostic
from ..runtime.job import ImageJob


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
    when: str | None = None  # the step's `when:` source
    runs: bool | None = True  # False: skipped for this request; None: earlier answers decide

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "when": self.when,
            "runs": self.runs,
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
                "size": size_text(job.size),
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


def size_text(size: tuple[int, int] | None) -> str | None:
    return None if size is None else f"{size[0]}x{size[1]}"
