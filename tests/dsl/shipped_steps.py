"""The plain steps of a task, a fan-out's sub-steps included, for tests that walk every
shipped step (a fan-out step has no request of its own)."""

from __future__ import annotations

from typing import Any

from engine.dsl.spec import FanOutStep, StepSpec, TaskSpec


def plain_steps(task: TaskSpec) -> list[StepSpec]:
    out: list[StepSpec] = []
    for step in task.steps:
        out.extend(step.steps if isinstance(step, FanOutStep) else (step,))
    return out


def fan_out_items(task: TaskSpec, value: Any) -> dict[str, Any]:
    """The fan-out items' names bound to `value`, for rendering sub-steps outside a run."""
    return {s.fan_out.name: value for s in task.steps if isinstance(s, FanOutStep)}
