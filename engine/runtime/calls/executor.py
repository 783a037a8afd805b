"""Run one provider task pipeline for one upstream call: render, send, classify, extract, poll."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import aiohttp

from ...dsl.origins import may_receive_key
from ...dsl.spec import FanOutStep, ProviderSpec, StepSpec, TaskSpec
from ...dsl.templates import RenderError
from ...rawtext import plain
from ..redact import redact
from ..routing import retryafter
from ..routing.failures import UpstreamFailure, kind_for_status
from .fanout import fan_out
from .imagerefs import ImageRef, image_refs
from .upstream import EventFn, MalformedBody, Outgoing, Reply, build_request, send
from .waitclock import WaitClock
from .wire import WireClient

ProgressFn = Callable[[Any], None]

# A poll that hits a transient upstream error tries again this many times before giving up.
POLL_RETRIES = 2
CANCEL_TIMEOUT = 10.0
log = logging.getLogger("pixgate.executor")


# A preview image from a stream's `partial_event`, with its 0-based partial index.
PartialFn = Callable[["ImageRef", int], None]
# A final image as soon as it is known (an `image_event`, or a step's `images`), with the
# usage read from the same data (None when unknown).
ImageFn = Callable[["ImageRef", Any], None]


@dataclass(slots=True)
class CallResult:
    images: list[ImageRef] = field(default_factory=list)
    revised_prompt: str | None = None
    usage: Any = None
    deliver: bool = True  # False: a fan-out item's images wait for their turn
    failures: list[UpstreamFailure] = field(default_factory=list)  # fan-out items that failed


@dataclass(slots=True)
class CallHooks:
    """A durable job's view of one call: checkpoints as its top-level steps begin, a count of
    its polls, and where a resumed call starts (`start`, with `done`: the values the steps
    before it extracted, restored instead of sending those steps again)."""

    on_step: Callable[[int, dict[str, Any]], Awaitable[None]] | None = None
    on_poll: Callable[[], None] | None = None
    start: int = 0
    done: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Executor:
    """Runs compiled steps; knows HTTP and the DSL, nothing about OpenAI request shapes."""

    client: WireClient  # step exchanges (calls/wire)
    provider: ProviderSpec
    base_url: str
    key: str | None
    on_progress: ProgressFn | None = None
    poll_scale: float = 1.0
    on_partial: PartialFn | None = None
    on_image: ImageFn | None = None
    clock: WaitClock = field(default_factory=WaitClock)
    extra_headers: Mapping[str, str] | None = None  # e.g. the on-gateway upstream's token
    # True when a cancellation is the client's (an async job's DELETE): the task's `cancel`
    # step then tells the upstream. Other cancellations (shutdown, hand-over) send nothing.
    cancelling: Callable[[], bool] | None = None

    def run(
        self, task: TaskSpec, ctx: dict[str, Any], hooks: CallHooks | None = None
    ) -> Coroutine[Any, Any, CallResult]:
        """`ctx`: this call's own context (call_context builds one per call); the steps'
        values are added to it, not to a copy: a polling job holds it for minutes. (It hands
        over the steps' coroutine: a waiting job has no frame of this method's.)"""
        ctx["steps"] = dict(hooks.done) if hooks is not None else {}
        return self._run_steps(task.steps, ctx, CallResult(), ran=False, hooks=hooks, task=task)

    async def cancel(self, task: TaskSpec, ctx: dict[str, Any], done: dict[str, Any]) -> None:
        """The task's cancel step for a call another process ran (`done`: the values its
        steps extracted, from its checkpoint), when the client cancels the job."""
        if task.cancel is not None:
            await self._cancel_upstream(task.cancel, {**ctx, "steps": dict(done)})

    async def _cancel_upstream(self, step: StepSpec, ctx: dict[str, Any]) -> None:
        """Once, bounded, and only after a step answered: a failure is logged, not raised."""
        if not ctx["steps"] or (step.when is not None and not step.when.truthy(ctx)):
            return
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT):
                reply = await send(self.client, self._render(step, ctx), step, None)
            log.info("upstream cancel provider=%s status=%s", self.provider.id, reply.status)
        except Exception as exc:  # best effort: the job is cancelled either way
            reason = redact(str(exc), self.key)
            log.warning("upstream cancel failed provider=%s: %s", self.provider.id, reason)

    async def _run_steps(
        self,
        steps: Sequence[StepSpec | FanOutStep],
        ctx: dict[str, Any],
        result: CallResult,
        ran: bool,
        hooks: CallHooks | None = None,
        task: TaskSpec | None = None,
    ) -> CallResult:
        """`ran`: an earlier step ran (the first poll then waits one interval). `hooks`: the
        top-level steps of a durable job (a resumed one skips the steps before `start`).
        `task`: these are its own steps (not a fan-out item's): a cancelled call sends its
        `cancel` step, and a call that ends without an image fails."""
        try:
            for index, step in enumerate(steps):
                if hooks is not None:
                    if index < hooks.start:
                        continue  # done before the resume: its values are in ctx["steps"]
                    if hooks.on_step is not None:
                        await hooks.on_step(index, ctx["steps"])
                if step.when is not None and not step.when.truthy(ctx):
                    continue  # a skipped step extracts nothing and adds no images
                if isinstance(step, FanOutStep):
                    ctx["steps"][step.name] = await self._fan_out(step, ctx, result)
                elif step.polls:  # the polls are awaited here, not in a frame of their own
                    on_poll = hooks.on_poll if hooks is not None else None
                    reply = await self._poll(step, ctx, result, not ran, on_poll)
                    ctx["steps"][step.name] = self._extract(step, reply, result)
                    del reply  # not held through the steps after it (a polling one waits)
                else:  # one exchange (`_once`, written out: no coroutine of its own per step)
                    out = self._render(step, ctx)
                    on_event = self._event_reader(step, result, out) if step.stream else None
                    with self.clock:
                        reply = await send(self.client, out, step, on_event)
                    del out, on_event  # not held through the steps after it
                    self._check(step, reply)
                    ctx["steps"][step.name] = self._extract(step, reply, result)
                    del reply
                ran = True
        except asyncio.CancelledError:
            cancel = task.cancel if task is not None else None
            if cancel is not None and self.cancelling is not None and self.cancelling():
                await self._cancel_upstream(cancel, ctx)
            raise
        if task is not None and not result.images:
            raise UpstreamFailure("upstream", "the upstream answered without any image")
        return result

    def _extract(self, step: StepSpec, reply: Reply, result: CallResult) -> dict[str, Any]:
        """The step's `extract` values from its answer, and its images into `result`."""
        if not step.extract:  # a step whose values no later step reads (most)
            self._collect(step, reply, result)
            return {}
        values = {name: plain(expr.search(reply.body)) for name, expr in step.extract}
        missing = [name for name, value in values.items() if value in (None, "")]
        if missing:  # a later step would call a broken URL; say what the upstream said
            reason = self._message(step, reply, "no details")
            raise UpstreamFailure(
                "upstream",
                f"step '{step.name}': the answer has no {', '.join(missing)} ({reason})",
                reply.status,
            )
        self._collect(step, reply, result)
        return values

    async def _fan_out(
        self, step: FanOutStep, ctx: dict[str, Any], result: CallResult
    ) -> list[dict[str, Any] | None]:
        """Items' images join the result in item order (not as they finish), so a streaming
        client gets them once they are all done. Later steps see, per item, its own step
        values (None for an item that failed)."""

        async def run_item(item_ctx: dict[str, Any]) -> CallResult:
            sub = CallResult(deliver=False)
            await self._run_steps(step.steps, item_ctx, sub, ran=True)
            return sub

        values: list[dict[str, Any] | None] = []
        for entry in await fan_out(step, ctx, run_item):
            if isinstance(entry, UpstreamFailure):
                result.failures.append(entry)
                values.append(None)
                continue
            sub, own = entry
            for ref in sub.images:
                self._add_image(result, ref, sub.usage)
            result.revised_prompt = result.revised_prompt or sub.revised_prompt
            result.usage = result.usage or sub.usage
            values.append(own)
        return values

    def _render(self, step: StepSpec, ctx: dict[str, Any]) -> Outgoing:
        try:
            out = build_request(step.request, ctx, self.base_url, self.provider.auth, self.key)
        except RenderError as exc:  # e.g. `from_json` on what an earlier answer held
            raise UpstreamFailure("upstream", f"step '{step.name}': {exc}") from None
        if self.extra_headers and may_receive_key(out.url, self.base_url):
            out.headers.update(self.extra_headers)
        return out

    async def _once(
        self, step: StepSpec, ctx: dict[str, Any], result: CallResult, out: Outgoing | None = None
    ) -> Reply:
        out = out or self._render(step, ctx)
        on_event = self._event_reader(step, result, out) if step.stream else None
        with self.clock:
            reply = await send(self.client, out, step, on_event)
        self._check(step, reply)
        return reply

    def _event_reader(self, step: StepSpec, result: CallResult, out: Outgoing) -> EventFn | None:
        """Handles a stream's partial and image events while the stream is still open."""
        spec = step.stream
        if spec is None or (spec.partial_event is None and spec.image_event is None):
            return None
        partials = 0

        def on_event(name: str, data: Any) -> None:
            nonlocal partials
            if name == spec.image_event and spec.image is not None:
                usage = step.usage.search(data) if step.usage is not None else None
                for ref in image_refs(spec.image.search(data), step.image_kind, str(out.url)):
                    self._add_image(result, ref, usage)
            elif name == spec.partial_event and spec.partial_image is not None:
                count, partials = partials, partials + 1
                if self.on_partial is None:
                    return  # nobody streams: previews are dropped
                refs = image_refs(spec.partial_image.search(data), step.image_kind, str(out.url))
                found = spec.partial_index.search(data) if spec.partial_index else None
                index = found if _is_index(found) else count
                for ref in refs[:1]:
                    self.on_partial(ref, index)

        return on_event

    def _add_image(self, result: CallResult, ref: ImageRef, usage: Any) -> None:
        result.images.append(ref)
        if self.on_image is not None and result.deliver:
            self.on_image(ref, usage)

    async def _poll(
        self,
        step: StepSpec,
        ctx: dict[str, Any],
        result: CallResult,
        first_step: bool,
        on_poll: Callable[[], None] | None = None,
    ) -> Reply:
        assert step.until is not None
        deadline = time.monotonic() + step.timeout
        interval = step.every
        transient = 0
        # Every poll sends the same request: render it once (multipart bodies are single-use).
        out = self._render(step, ctx)
        reusable = not isinstance(out.data, aiohttp.FormData)
        if (wait := step.first_wait(first_step)) > 0:
            with self.clock:
                await _sleep(min(wait * self.poll_scale, step.timeout))
        while True:
            if on_poll is not None:
                on_poll()
            try:
                reply = await self._once(step, ctx, result, out if reusable else None)
            except UpstreamFailure as failure:
                transient += 1
                if failure.kind not in ("upstream", "timeout") or transient > POLL_RETRIES:
                    raise
            else:
                transient = 0
                if step.fail_if is not None and step.fail_if.truthy(reply.body):
                    raise UpstreamFailure(
                        step.fail_kind, self._message(step, reply, "task failed"), reply.status
                    )
                if step.until.truthy(reply.body):
                    return reply
                if step.progress is not None and self.on_progress is not None:
                    self.on_progress(step.progress.search(reply.body))
                del reply  # thousands of jobs wait at once: none keeps its last answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamFailure(
                    "timeout", f"step '{step.name}' did not finish within {step.timeout:g}s"
                )
            with self.clock:  # the upstream is working; we are only waiting
                await _sleep(min(interval * self.poll_scale, remaining))
            interval = min(interval * step.backoff, max(step.max_every, step.every))

    def _check(self, step: StepSpec, reply: Reply) -> None:
        """Raise when the reply is a failure: provider rules first, then HTTP status."""
        envelope = reply.envelope(self.provider.errors_read_headers)
        index = self.provider.first_error(envelope)  # the first rule that holds
        if index >= 0:
            rule = self.provider.errors[index]
            message = rule.message.search(envelope) if rule.message else None
            raise UpstreamFailure(
                rule.kind,
                self._message(step, reply, "", str(message) if message else None),
                reply.status,
                retryafter.from_headers(reply.headers),
            )
        # (kind_for_status is None below 300: a success makes no call to it)
        kind = kind_for_status(reply.status) if reply.status >= 300 else None
        if kind is None and reply.error_event:
            kind = "upstream"
        if kind is None and isinstance(reply.body, MalformedBody):
            kind = "upstream"
            raise UpstreamFailure(
                kind, f"malformed answer from upstream: {reply.body[:200]!r}", reply.status
            )
        if kind is not None:
            raise UpstreamFailure(
                kind,
                self._message(step, reply, f"HTTP {reply.status}"),
                reply.status,
                retryafter.from_headers(reply.headers),
            )

    def _message(
        self, step: StepSpec, reply: Reply, fallback: str, explicit: str | None = None
    ) -> str:
        text = explicit
        body = reply.body
        if text is None and step.error_message is not None and not isinstance(body, MalformedBody):
            found = step.error_message.search(body)
            text = str(found) if found not in (None, "", []) else None
        if text is None and isinstance(body, dict | list):
            found = self.provider.error_message.search(body)
            if isinstance(found, str | int | float) and found != "":
                text = str(found)
            elif isinstance(found, list | dict) and found:
                text = str(found)[:300]
        if text is None and isinstance(body, str) and body:
            text = body[:300]
        if text is None:
            text = reply.headers.get("x-error-message") or fallback or f"HTTP {reply.status}"
        prefix = f"HTTP {reply.status}: " if reply.status >= 300 else ""
        return f"{prefix}{text}"

    def _collect(self, step: StepSpec, reply: Reply, result: CallResult) -> None:
        usage = step.usage.search(reply.body) if step.usage is not None else None
        if step.revised_prompt is not None:
            value = step.revised_prompt.search(reply.body)
            result.revised_prompt = value if isinstance(value, str) else result.revised_prompt
        result.usage = usage or result.usage
        if reply.raw is not None:
            self._add_image(result, ImageRef("bytes", reply.raw, reply.mime), usage)
        elif step.images is not None:
            for ref in image_refs(step.images.search(reply.body), step.image_kind, reply.url):
                self._add_image(result, ref, usage)


def _sleep(delay: float) -> asyncio.Future[None]:
    """asyncio.sleep for the wait between polls, without a coroutine frame and a copy of the
    context per wait: thousands of jobs wait in it at once. A cancelled wait leaves its timer
    to fire into the cancelled future (within one poll interval)."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    loop.call_later(delay, _wake, woken, context=_NO_CONTEXT)
    return woken


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


_NO_CONTEXT = contextvars.Context()  # _wake reads no context variable


def _is_index(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
