"""A durable job's progress through its upstream calls, kept so another replica can resume.

The checkpoint is plain JSON in the job record: the attempt (route, provider, model, task and
the pool key's id, an HMAC that cannot give the key back), and per call its share of n, its
seeds, the top-level step it is at, the values the steps before it extracted, and how often
it polled. A call resumes from the last polling step at or before where it was (polling
again is safe); a call that was inside a step that does not poll (a submit) cannot be
resumed without sending that step again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...dsl.spec import StepSpec, TaskSpec
from .executor import CallHooks

Save = Callable[[dict[str, Any]], Awaitable[None]]
Settle = Callable[[], Awaitable[None]]  # charge the budget and count the usage of one run
SettleOnce = Callable[[Settle], Awaitable[None]]


class NotResumable(Exception):
    """The checkpoint cannot be resumed without sending a non-polling step again."""


@dataclass(slots=True)
class Journal:
    save: Save  # persists `data` (the job record's `checkpoint`)
    resume_from: dict[str, Any] | None = None  # the checkpoint another replica left
    client_cancelled: bool = False  # a cancellation is the client's: run the cancel step
    handed_over: bool = False  # the run stops here and the job goes on on another replica
    data: dict[str, Any] = field(default_factory=dict)
    # Runs a run's settlement of the job's usage and budget if it is the job's first,
    # fleet-wide: now, never, or later (None: always now)
    settle_once: SettleOnce | None = None

    def cancelled_by_client(self) -> bool:
        """The executor's `cancelling`: whether a cancellation is the client's."""
        return self.client_cancelled

    async def settle(self, settle: Settle) -> None:
        """Settle the job once, whichever replica ends it."""
        await (settle() if self.settle_once is None else self.settle_once(settle))

    async def attempt(
        self, route: str, provider: str, model: str, task: str, key_id: str | None, relay: bool
    ) -> None:
        """A new attempt begins: what earlier attempts did no longer matters."""
        self.data = {
            "attempt": {
                "route": route,
                "provider": provider,
                "model": model,
                "task": task,
                "key_id": key_id,
                "relay": relay,
            },
            "calls": {},
        }
        await self.save(self.data)

    def hooks(self, index: int, count: int, random_seed: Any, secret: str | None) -> CallHooks:
        """Hooks that checkpoint call `index`; `secret` (the key) must never be saved."""
        call: dict[str, Any] = {"count": count, "random_seed": random_seed, "step": 0}
        call.update(steps={}, polls=0)
        self.data.setdefault("calls", {})[str(index)] = call

        async def on_step(step: int, done: dict[str, Any]) -> None:
            values = orjson.loads(orjson.dumps(done, default=str))
            if secret and secret in orjson.dumps(values).decode():
                values = None  # an upstream echoed the key: resuming this call is impossible
            call.update(step=step, steps=values)
            await self.save(self.data)

        def on_poll() -> None:
            call["polls"] += 1

        return CallHooks(on_step=on_step, on_poll=on_poll)


def resumed_hooks(
    journal: Journal, task: TaskSpec, index: int, count: int, secret: str | None
) -> CallHooks:
    """Hooks for call `index` of a resumed attempt, starting where its checkpoint allows."""
    old = resumed_call(journal, index)
    calls = journal.data.setdefault("calls", {})
    hooks = journal.hooks(index, count, None, secret)
    if old is None:
        return hooks  # this call had not begun: nothing was sent for it
    start = resume_point(task, old)
    calls[str(index)].update(old, step=start)
    hooks.start, hooks.done = start, dict(old.get("steps") or {})
    return hooks


def resumed_call(journal: Journal, index: int) -> dict[str, Any] | None:
    found = (journal.resume_from or {}).get("calls", {}).get(str(index))
    return found if isinstance(found, dict) else None


def resume_point(task: TaskSpec, call: dict[str, Any]) -> int:
    """The step a call resumes at: the last polling step at or before where it was."""
    at = int(call.get("step", 0))
    if call.get("steps") is None:
        raise NotResumable("its checkpoint holds no step values")
    for index in range(min(at, len(task.steps) - 1), -1, -1):
        step = task.steps[index]
        if isinstance(step, StepSpec) and step.polls:
            return index
    raise NotResumable(f"it was in step '{task.steps[min(at, len(task.steps) - 1)].name}'")


def check_resumable(task: TaskSpec, checkpoint: dict[str, Any]) -> None:
    """Raise NotResumable unless every call that had begun can resume by polling."""
    for call in (checkpoint.get("calls") or {}).values():
        resume_point(task, call)
