"""One image request end to end: plan attempts, run calls (n fan-out), fail over, normalise."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from ..config.loader import ConfigSnapshot
from ..dsl.sizes import Size, fit_size
from ..dsl.spec import ProviderSpec, RouteSpec
from .breaker import Breakers
from .context import base_context, call_context, call_counts
from .executor import CallResult, Executor, ImageRef, ProgressFn
from .failures import FINAL_KINDS, UpstreamFailure
from .job import ImageJob
from .keys import KeyPools, NoHealthyKey, mask_key
from .optimizer import OptimizerError, optimize
from .results import ResultContext, to_client
from .router import Attempt, Plan, Router
from .storage import LocalStorage

log = logging.getLogger("pixgate.service")

SYNC_DEADLINE = 120.0
POLLING_DEADLINE = 900.0
KEY_KINDS = frozenset({"rate_limited", "bad_key", "quota"})
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0


class NoUpstream(Exception):
    """Nothing can serve this request (all targets skipped); `status` says why in HTTP terms."""

    def __init__(self, message: str, status: int = 503, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


@dataclass(slots=True)
class Outcome:
    data: list[dict[str, str]]
    route: str
    provider: str
    model: str
    attempts: int
    failed: int = 0
    revised_prompt: str | None = None
    usage: Any = None
    size: Size | None = None
    size_adjusted: bool = False


@dataclass(slots=True)
class StreamImage:
    """An image for a streaming client, already base64."""

    b64_json: str
    index: int = 0  # a preview: the upstream's partial index; a final image: its position
    usage: Any = None  # what the upstream said about this image's cost, when it said so


StreamFn = Callable[[StreamImage], None]


@dataclass(slots=True)
class RequestInfo:
    request_id: str
    public_url: str
    self_url: str
    on_progress: ProgressFn | None = None
    relay: tuple[str, str] | None = None  # (provider id, the client's own key): relay mode
    attempts: int = 0
    failures: list[UpstreamFailure] = field(default_factory=list)
    # Streaming clients: with `on_image` set, every final image goes to it (base64) as soon as
    # it is known, and `Outcome.data` holds the same items; `on_partial` gets previews.
    on_partial: StreamFn | None = None
    on_image: StreamFn | None = None
    partial_images: int | None = None  # the client's `partial_images` (templates read it)
    delivered: int = 0  # final images handed to on_image; after the first, no failover

    @property
    def streaming(self) -> bool:
        return self.on_image is not None


@dataclass(slots=True)
class ImageService:
    session: aiohttp.ClientSession
    storage: LocalStorage
    router: Router
    keys: KeyPools
    breakers: Breakers = field(default_factory=Breakers)
    rng: random.Random = field(default_factory=random.Random)
    max_download: int = 50 * 1024 * 1024
    poll_scale: float = 1.0  # tests shrink polling intervals; 1.0 in production

    async def run(self, job: ImageJob, snapshot: ConfigSnapshot, info: RequestInfo) -> Outcome:
        relay = info.relay[0] if info.relay else None
        plan = self.router.plan(snapshot, job.model, job.task, relay)
        attempts = servable(job, plan.attempts)
        if not attempts:
            raise why_nothing(job, plan, relay)
        optimized = await self._optimize(job, plan.route, snapshot, info)
        if optimized is not None:
            job = dataclasses.replace(job, prompt=optimized)
        deadline = plan.route.timeout or (
            POLLING_DEADLINE
            if any(a.provider.tasks[a.task].polls for a in attempts)
            else SYNC_DEADLINE
        )
        try:
            async with asyncio.timeout(deadline):
                outcome = await self._failover(job, attempts, snapshot, info)
        except TimeoutError:
            raise UpstreamFailure(
                "timeout",
                f"no upstream finished within the {deadline:g}s deadline" + _last_reason(info),
            ) from None
        if optimized is not None and not outcome.revised_prompt:
            outcome.revised_prompt = optimized  # an upstream's own revision says more
        return outcome

    async def _optimize(
        self, job: ImageJob, route: RouteSpec, snapshot: ConfigSnapshot, info: RequestInfo
    ) -> str | None:
        """The route's prompt optimizer rewrites the prompt; None keeps the original (no
        optimizer, nothing to rewrite, or it failed: that is logged, never raised)."""
        spec = route.optimizer
        if spec is None or job.task == "variation" or not job.prompt.strip():
            return None
        provider = snapshot.providers.get(spec.provider)
        why: str | None = None
        key: str | None = None
        if provider is None:
            why = f"provider '{spec.provider}' is not loaded"
        elif info.relay is not None:
            if info.relay[0] != provider.id:  # a relay client's request spends no pool key
                return None
            key = info.relay[1]
        elif not provider.available:
            why = "no keys configured"
        else:
            try:
                key = self.keys.order(provider, snapshot.routes.policy(provider.id))[0]
            except NoHealthyKey as exc:
                why = f"no healthy key ({exc})"
        if why is not None or provider is None:
            log.warning(
                "prompt optimizer skipped request_id=%s route=%s provider=%s: %s",
                info.request_id, route.name, spec.provider, why,
            )  # fmt: skip
            return None
        base_url = provider.base_url
        if provider.on_gateway:
            base_url = info.self_url + base_url
        try:
            with self.keys.use(provider.id, None if info.relay else key):
                rewritten = await optimize(self.session, spec, provider, base_url, key, job.prompt)
        except Exception as exc:  # never fails the request: the original prompt goes on
            text = str(exc) if isinstance(exc, OptimizerError) else repr(exc)
            message = text.replace(key, mask_key(key)) if key else text
            log.warning(
                "prompt optimizer failed, keeping the original prompt request_id=%s route=%s "
                "provider=%s model=%s: %s",
                info.request_id, route.name, provider.id, spec.model, message,
            )  # fmt: skip
            return None
        log.info(
            "prompt optimized request_id=%s route=%s provider=%s model=%s chars=%d->%d",
            info.request_id, route.name, provider.id, spec.model, len(job.prompt), len(rewritten),
        )  # fmt: skip
        return rewritten

    async def _failover(
        self, job: ImageJob, attempts: list[Attempt], snapshot: ConfigSnapshot, info: RequestInfo
    ) -> Outcome:
        retries = 0
        for attempt in attempts:
            pid = attempt.provider.id
            policy = snapshot.routes.policy(pid)
            if not self.breakers.allow(pid):
                info.failures.append(UpstreamFailure("upstream", "circuit open", provider=pid))
                continue
            try:
                keys = [info.relay[1]] if info.relay else self.keys.order(attempt.provider, policy)
            except NoHealthyKey as exc:
                info.failures.append(
                    UpstreamFailure("rate_limited", str(exc), 429, exc.retry_after, pid)
                )
                continue
            for key in keys:
                if retries:
                    await asyncio.sleep(self._backoff(retries))
                info.attempts += 1
                try:
                    # A relayed key is the client's: it never enters the pool's bookkeeping.
                    with self.keys.use(pid, None if info.relay else key):
                        outcome = await self._attempt(job, attempt, key, info)
                except UpstreamFailure as failure:
                    self._note(failure, attempt, key, info)
                    if not info.relay:
                        self.keys.failed(pid, key, failure, policy)
                    self.breakers.record(pid, failure.kind, policy.breaker)
                    if info.delivered:
                        raise  # a streaming client already has images from this attempt
                    failover_on = snapshot.route(attempt.route).failover_on
                    if failure.kind in FINAL_KINDS and failure.kind not in failover_on:
                        raise
                    if failure.kind in KEY_KINDS:
                        continue  # the next key of the same provider
                    retries += failure.kind in ("upstream", "timeout")
                    break  # another key will not help: the next target
                else:
                    if not info.relay:
                        self.keys.succeeded(pid, key)
                    self.breakers.record(pid, None, policy.breaker)
                    return outcome
        raise _most_informative(info.failures)

    def _backoff(self, retries: int) -> float:
        """Exponential backoff with full jitter before trying the next target."""
        return self.rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (retries - 1)))

    def _note(
        self, failure: UpstreamFailure, attempt: Attempt, key: str | None, info: RequestInfo
    ) -> None:
        failure.provider = attempt.provider.id
        if key:  # an upstream may echo the key back in its error text
            failure.message = failure.message.replace(key, mask_key(key))
        info.failures.append(failure)
        log.info(
            "attempt failed request_id=%s provider=%s kind=%s: %s",
            info.request_id,
            attempt.provider.id,
            failure.kind,
            failure.message,
        )

    async def _attempt(
        self, job: ImageJob, attempt: Attempt, key: str | None, info: RequestInfo
    ) -> Outcome:
        provider, model = attempt.provider, attempt.model
        task = provider.tasks[attempt.task]
        fitted = fit_size(job.size, model.sizes)
        size = Size(*fitted)
        base_url = (
            provider.base_url if not provider.on_gateway else info.self_url + provider.base_url
        )
        sink = (
            _StreamSink(info, job.n, self._result_context(provider, key, base_url, info))
            if info.streaming
            else None
        )
        executor = Executor(
            self.session,
            provider,
            base_url,
            key,
            info.on_progress,
            self.poll_scale,
            on_partial=sink.partial if sink is not None and info.on_partial else None,
            on_image=sink.image if sink is not None else None,
        )
        base_ctx = base_context(
            job,
            attempt,
            size,
            key,
            info.request_id,
            stream=info.streaming,
            partial_images=info.partial_images,
        )
        counts = call_counts(job.n, model.images_per_call or task.images_per_call)
        gate = asyncio.Semaphore(task.parallel)

        async def call(index: int, count: int) -> CallResult:
            async with gate:
                ctx = call_context(base_ctx, job, index, count, secrets.randbelow(2**31))
                return await executor.run(task, ctx)

        try:
            results = await asyncio.gather(
                *(call(i, c) for i, c in enumerate(counts)), return_exceptions=True
            )
            images: list[ImageRef] = []
            failures: list[UpstreamFailure] = []
            for r in results:
                if isinstance(r, UpstreamFailure):
                    failures.append(r)
                elif isinstance(r, BaseException):
                    raise r
                else:
                    images.extend(r.images)
            if not images:
                raise _most_informative(failures)
            images = images[: job.n]
            if sink is not None:
                data = await sink.finish()  # the client has these already
                if not data:
                    raise _most_informative(sink.failures)
            else:
                data = await self._normalise(job, attempt, key, base_url, images, info)
        finally:
            if sink is not None:
                sink.cancel()  # images of a failed attempt are not handed out late
        first = next((r for r in results if isinstance(r, CallResult)), CallResult())
        return Outcome(
            data=data,
            route=attempt.route,
            provider=provider.id,
            model=model.name,
            attempts=info.attempts,
            failed=job.n - len(data),
            revised_prompt=first.revised_prompt,
            usage=first.usage,
            size=size,
            size_adjusted=job.size is not None and job.size != fitted,
        )

    async def _normalise(
        self,
        job: ImageJob,
        attempt: Attempt,
        key: str | None,
        base_url: str,
        images: list[ImageRef],
        info: RequestInfo,
    ) -> list[dict[str, str]]:
        provider = attempt.provider
        ctx = self._result_context(provider, key, base_url, info)
        outs = await asyncio.gather(
            *(to_client(ref, job.response_format, provider.rehost_urls, ctx) for ref in images),
            return_exceptions=True,
        )
        data = [o for o in outs if isinstance(o, dict)]
        errors = [o for o in outs if isinstance(o, BaseException)]
        for err in errors:
            if not isinstance(err, UpstreamFailure):
                raise err
        if not data:
            raise _most_informative([e for e in errors if isinstance(e, UpstreamFailure)])
        return data

    def _result_context(
        self, provider: ProviderSpec, key: str | None, base_url: str, info: RequestInfo
    ) -> ResultContext:
        auth_headers = None
        if key and provider.auth.header and provider.auth.value is not None:
            auth_headers = {provider.auth.header: str(provider.auth.value.render({"key": key}))}
        return ResultContext(
            self.session,
            self.storage,
            info.public_url,
            self.max_download,
            auth_host=URL(base_url).host,
            auth_headers=auth_headers,
        )


class _StreamSink:
    """Hands one attempt's images to a streaming client as base64, as soon as each is known.

    Conversions (a URL result is downloaded) run at once, side by side; deliveries keep the
    order the images arrived in. At most `n` final images are handed out."""

    def __init__(self, info: RequestInfo, n: int, ctx: ResultContext) -> None:
        self.info = info
        self.n = n
        self.ctx = ctx
        self.accepted = 0
        self.items: list[dict[str, str]] = []
        self.failures: list[UpstreamFailure] = []
        self._tasks: list[asyncio.Task[None]] = []

    def partial(self, ref: ImageRef, index: int) -> None:
        self._spawn(ref, lambda item: self._emit_partial(item, index), final=False)

    def image(self, ref: ImageRef, usage: Any) -> None:
        if self.accepted >= self.n:
            return
        self.accepted += 1
        self._spawn(ref, lambda item: self._emit_image(item, usage), final=True)

    def _emit_partial(self, item: dict[str, str], index: int) -> None:
        if self.info.on_partial is not None:
            self.info.on_partial(StreamImage(item["b64_json"], index))

    def _emit_image(self, item: dict[str, str], usage: Any) -> None:
        self.items.append(item)
        self.info.delivered += 1
        if self.info.on_image is not None:
            self.info.on_image(StreamImage(item["b64_json"], len(self.items) - 1, usage))

    def _spawn(self, ref: ImageRef, emit: Callable[[dict[str, str]], None], *, final: bool) -> None:
        previous = self._tasks[-1] if self._tasks else None
        self._tasks.append(asyncio.create_task(self._deliver(ref, previous, emit, final)))

    async def _deliver(
        self,
        ref: ImageRef,
        previous: asyncio.Task[None] | None,
        emit: Callable[[dict[str, str]], None],
        final: bool,
    ) -> None:
        item: dict[str, str] | None = None
        try:
            item = await to_client(ref, "b64_json", False, self.ctx)
        except UpstreamFailure as failure:
            if final:
                self.failures.append(failure)
        except Exception as exc:  # a task's error would otherwise go unseen
            log.exception("streaming an image failed request_id=%s", self.info.request_id)
            if final:
                self.failures.append(UpstreamFailure("upstream", f"result unusable: {exc}"))
        if previous is not None:
            await asyncio.wait({previous})  # keep the order; never raises
        if item is not None:
            emit(item)

    async def finish(self) -> list[dict[str, str]]:
        """Wait for every delivery; the final items handed out, in order."""
        if self._tasks:
            await asyncio.wait(self._tasks)
        return self.items

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()


def servable(job: ImageJob, attempts: Sequence[Attempt]) -> list[Attempt]:
    """The attempts whose model takes this request's n and input images, in their order."""
    return [a for a in attempts if job.n <= a.model.max_n and len(job.images) <= a.model.max_images]


def why_nothing(job: ImageJob, plan: Plan, relay: str | None) -> NoUpstream:
    """The clearest reason no target can take this request (a 400 when it is the request's)."""
    name = job.model or plan.route.name
    if plan.attempts:
        if any(job.n > a.model.max_n for a in plan.attempts):
            most = max(a.model.max_n for a in plan.attempts)
            return NoUpstream(f"n must be at most {most} for model '{name}'", 400, "n")
        most = max(a.model.max_images for a in plan.attempts)
        return NoUpstream(
            f"model '{name}' takes at most {most} input images, got {len(job.images)}", 400, "image"
        )
    if plan.skipped and all(s.reason.startswith("does not support") for s in plan.skipped):
        return NoUpstream(f"model '{name}' does not support {job.task}", 400, "model")
    reasons = "; ".join(f"{s.target.provider}/{s.target.model}: {s.reason}" for s in plan.skipped)
    return NoUpstream(
        f"no upstream can serve '{plan.route.name}' for {job.task} right now"
        + (f" ({reasons})" if reasons else ""),
        400 if relay else 503,
        "model" if relay else None,
    )


def _most_informative(failures: list[UpstreamFailure]) -> UpstreamFailure:
    if not failures:
        return UpstreamFailure("upstream", "no upstream attempt was made")
    for failure in failures:
        if failure.kind in FINAL_KINDS:
            return failure
    if all(f.kind == "rate_limited" for f in failures):
        waits = [f.retry_after for f in failures if f.retry_after is not None]
        last = failures[-1]
        return UpstreamFailure(
            "rate_limited", last.message, last.status, min(waits) if waits else None, last.provider
        )
    return failures[-1]


def _last_reason(info: RequestInfo) -> str:
    return f" (last failure: {info.failures[-1].message})" if info.failures else ""
