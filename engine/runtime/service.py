"""One image request end to end: plan attempts, run calls (n fan-out), fail over, normalise."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

from ..config.loader import ConfigSnapshot
from ..dsl.spec import InputsSpec, ProviderPolicy, RouteSpec
from ..metrics import GatewayMetrics
from ..state import RELEASED, Denied, Grant, KeyIds, StateBackend
from ..storage.hub import StorageHub
from .attempt import run_attempt
from .calls.optimizer import OptimizerError, optimize
from .calls.wire import WireClient
from .images.fetch import FetchPolicy
from .job import ImageJob
from .lifecycle.deadline import deadline
from .redact import redact
from .request import Outcome, RequestInfo
from .routing import retryafter
from .routing.failures import FINAL_KINDS, UpstreamFailure
from .routing.router import Attempt, Router
from .routing.verdicts import last_reason, most_informative, servable, why_nothing

log = logging.getLogger("pixgate.service")
T = TypeVar("T")

SYNC_DEADLINE = 120.0
POLLING_DEADLINE = 900.0
KEY_KINDS = frozenset({"rate_limited", "bad_key", "quota"})
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0
BUSY_WAIT_CAP = 0.2  # longest pause between two tries for a key slot while all are taken


@dataclass(slots=True)
class ImageService:
    session: aiohttp.ClientSession  # result downloads with the key, the prompt optimizer
    client: WireClient  # step exchanges (calls/wire)
    storage: StorageHub
    router: Router
    state: StateBackend  # key health, breakers, cursors, leases: memory or Redis
    fetch_session: aiohttp.ClientSession  # SSRF-guarded: result URLs an upstream names
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    rng: random.Random = field(default_factory=random.Random)
    max_download: int = 50 * 1024 * 1024
    poll_scale: float = 1.0  # tests shrink polling intervals; 1.0 in production
    # Headers for on-gateway upstreams (the demo): they answer only the gateway itself.
    internal_headers: dict[str, str] = field(default_factory=dict)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    # Names a pool key in a job's checkpoint without the key (state.key_ids)
    key_ids: KeyIds = field(default_factory=lambda: KeyIds(secrets.token_hex(16)))

    def check_counts(
        self, job: ImageJob, snapshot: ConfigSnapshot, relay: str | None, images: int
    ) -> None:
        """Before any input image is fetched: refuse (NoUpstream, 400) a request that no
        target could take for its n or its number of images."""
        plan = self.router.plan(snapshot, job.model, job.task, relay)
        if plan.attempts and not servable(job, plan, images):
            raise why_nothing(job, plan, relay, images)

    async def run(self, job: ImageJob, snapshot: ConfigSnapshot, info: RequestInfo) -> Outcome:
        relay = info.relay[0] if info.relay else None
        plan = self.router.plan(snapshot, job.model, job.task, relay)
        attempts = servable(job, plan)
        if not attempts:
            raise why_nothing(job, plan, relay)
        optimized = None  # a route without an optimizer needs no coroutine to say so
        if plan.route.optimizer is not None:
            optimized = await self._optimize(job, plan.route, snapshot, info)
        if optimized is not None:
            job = dataclasses.replace(job, prompt=optimized)
        polls = plan.polls if attempts is plan.attempts else any(a.polls for a in attempts)
        seconds = plan.route.timeout or (POLLING_DEADLINE if polls else SYNC_DEADLINE)
        outcome: Outcome | None = None
        retries = 0
        prepared: dict[InputsSpec, ImageJob] = {}  # input images per provider rule set
        try:
            with deadline(seconds):
                for attempt in attempts:  # fail over until one answers
                    target_job = job
                    if job.images or job.mask is not None:
                        target_job = await self._inputs_for(
                            job, attempt.provider.inputs, prepared, info.public_url
                        )
                    outcome, retries = await self._target(
                        target_job, attempt, snapshot, info, retries
                    )
                    if outcome is not None:
                        break
        except TimeoutError:
            raise UpstreamFailure(
                "timeout",
                f"no upstream finished within the {seconds:g}s deadline" + last_reason(info),
            ) from None
        if outcome is None:
            raise most_informative(info.failures)
        if optimized is not None and not outcome.revised_prompt:
            outcome.revised_prompt = optimized  # an upstream's own revision says more
        self.metrics.delivered(outcome.provider, len(outcome.data))
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
        grant: Grant | None = None
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
                grant = await self.state.acquire(provider, snapshot.routes.policy(provider.id))
                key = grant.key
            except Denied as exc:
                why = f"no key now ({exc})"
        if why is not None or provider is None:
            log.warning(
                "prompt optimizer skipped request_id=%s route=%s provider=%s: %s",
                info.request_id, route.name, spec.provider, why,
            )  # fmt: skip
            return None
        base_url = provider.base_url
        if provider.on_gateway:
            base_url = info.self_url + base_url
        policy = snapshot.routes.policy(provider.id)
        try:
            rewritten = await optimize(self.session, spec, provider, base_url, key, job.prompt)
        except Exception as exc:  # never fails the request: the original prompt goes on
            text = str(exc) if isinstance(exc, OptimizerError) else repr(exc)
            message = redact(text, key)
            log.warning(
                "prompt optimizer failed, keeping the original prompt request_id=%s route=%s "
                "provider=%s model=%s: %s",
                info.request_id, route.name, provider.id, spec.model, message,
            )  # fmt: skip
            return None
        finally:
            if grant is not None:  # the key was only borrowed: no verdict on its health
                await self.state.settle(grant, policy, RELEASED, wait=False)
        log.info(
            "prompt optimized request_id=%s route=%s provider=%s model=%s chars=%d->%d",
            info.request_id, route.name, provider.id, spec.model, len(job.prompt), len(rewritten),
        )  # fmt: skip
        return rewritten

    async def _target(
        self,
        job: ImageJob,
        attempt: Attempt,
        snapshot: ConfigSnapshot,
        info: RequestInfo,
        retries: int,
    ) -> tuple[Outcome | None, int]:
        """Try one target's keys in turn: its outcome, or None to go on to the next target
        (with the count of retries so far, for the backoff). Every grant is settled: with
        the attempt's verdict, or released without one when the attempt is cancelled (the
        deadline, a departing client) or fails unexpectedly, so no key lease or breaker probe
        stays taken."""
        pid, policy = attempt.provider.id, attempt.policy
        tried: list[str] = []
        while True:
            if retries:
                await asyncio.sleep(self._backoff(retries))
            try:
                grant = self._grant_now(attempt, policy, info, tried)
                if grant is None:
                    grant = await self._grant(attempt, policy, info, tried)
            except Denied as exc:
                if not (tried and exc.why == "no_key"):  # else the keys' own failures say more
                    info.failures.append(denied_failure(exc))
                return None, retries
            # A relayed key is the client's: it never enters the pool's bookkeeping.
            key = info.relay[1] if info.relay else grant.key
            if grant.key is not None:
                tried.append(grant.key)
            info.attempts += 1
            started = time.perf_counter()
            try:
                outcome = await run_attempt(self, job, attempt, key, info)
            except UpstreamFailure as failure:
                self.metrics.attempt(pid, failure.kind, time.perf_counter() - started)
                # What the client is told to wait is bounded as the key's cooldown is.
                failure.retry_after = retryafter.clamp(failure.retry_after, policy.max_cooldown)
                self._note(failure, attempt, key, info)
                await self.state.settle(grant, policy, failure.kind, failure.retry_after)
                if info.delivered:
                    raise  # a streaming client already has images from this attempt
                failover_on = snapshot.route(attempt.route).failover_on
                if failure.kind in FINAL_KINDS and failure.kind not in failover_on:
                    raise
                if failure.kind in KEY_KINDS and grant.key is not None:
                    continue  # the next key of the same provider
                return None, retries + (failure.kind in ("upstream", "timeout"))
            except BaseException:
                await self.state.settle(grant, policy, RELEASED, wait=False)
                raise
            self.metrics.attempt(pid, "success", time.perf_counter() - started)
            if not self.state.settle_nowait(grant, policy, None, None):
                await self.state.settle(grant, policy, None, wait=False)
            return outcome, retries

    def _grant_now(
        self, attempt: Attempt, policy: ProviderPolicy, info: RequestInfo, tried: list[str]
    ) -> Grant | None:
        """A grant the state gives without waiting (in-process state, a free key), else None
        for `_grant` (a round trip, or every key busy). Raises Denied."""
        try:
            return self.state.acquire_nowait(
                attempt.provider, policy, pool=not info.relay, exclude=tried
            )
        except Denied as exc:
            if exc.why != "busy":
                raise
            return None

    async def _grant(
        self, attempt: Attempt, policy: ProviderPolicy, info: RequestInfo, tried: list[str]
    ) -> Grant:
        """A grant for the next attempt; while every healthy key is at its concurrency limit,
        wait for a slot (the request's deadline bounds the wait)."""
        waits = 0
        while True:
            try:
                return await self.state.acquire(
                    attempt.provider, policy, pool=not info.relay, exclude=tried
                )
            except Denied as exc:
                if exc.why != "busy":
                    raise
            waits += 1
            await asyncio.sleep(self.rng.uniform(0.5, 1.0) * min(BUSY_WAIT_CAP, 0.01 * waits))

    async def _inputs_for(
        self,
        job: ImageJob,
        spec: InputsSpec | None,
        prepared: dict[InputsSpec, ImageJob],
        public_url: str,
    ) -> ImageJob:
        """The job's input images as this provider's `inputs:` wants them, converted once per
        request (Pillow, in a worker thread: big images would stall the event loop). A
        converted image that had a public URL (inputs are published) gets one of its own.
        Called for a job with input images (or a mask)."""
        if spec is None:
            return job
        if spec not in prepared:
            from .images.transforms import transform_job  # Pillow: only with input images

            out = await asyncio.to_thread(transform_job, job, spec)
            for new, old in zip(out.images, job.images, strict=True):
                if new is not old and old.public_url:
                    meta = {"kind": "input"}
                    new.public_url = await self.storage.store(new.data, new.mime, meta, public_url)
            prepared[spec] = out
        return prepared[spec]

    def _backoff(self, retries: int) -> float:
        """Exponential backoff with full jitter before trying the next target."""
        return self.rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (retries - 1)))

    def _note(
        self, failure: UpstreamFailure, attempt: Attempt, key: str | None, info: RequestInfo
    ) -> None:
        failure.provider = attempt.provider.id
        # an upstream may echo the key back in its error text, in any encoding
        failure.message = redact(failure.message, key)
        info.failures.append(failure)
        log.info(
            "attempt failed request_id=%s provider=%s kind=%s: %s",
            info.request_id,
            attempt.provider.id,
            failure.kind,
            failure.message,
        )


def denied_failure(exc: Denied) -> UpstreamFailure:
    """What a denied attempt tells the client if nothing else succeeds."""
    if exc.why == "circuit_open":
        return UpstreamFailure("upstream", "circuit open", provider=exc.provider)
    return UpstreamFailure("rate_limited", str(exc), 429, exc.retry_after, exc.provider)
