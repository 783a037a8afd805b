"""One attempt: one target (provider, model) with one key. Its calls (n split into calls of
the sizes the provider takes, `parallel` at a time), a streaming client's images as they come,
a durable job's checkpoints, and the results made into what the client asked for. Failover,
keys, grants and deadlines are service.py's."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..dsl.sizes import Size, fitted
from ..dsl.spec import ProviderSpec
from .calls.checkpoint import resumed_call, resumed_hooks
from .calls.context import base_context, call_counts, response_format, with_call
from .calls.executor import CallResult, Executor
from .calls.imagerefs import ImageRef
from .calls.streamsink import StreamSink
from .images.download import DownloadScope
from .images.results import ClientItem, ResultContext, passed_through, to_client
from .job import ImageJob
from .request import Outcome, RequestInfo
from .routing.failures import UpstreamFailure
from .routing.router import Attempt
from .routing.verdicts import most_informative

if TYPE_CHECKING:
    from .service import ImageService

T = TypeVar("T")


async def run_attempt(
    svc: ImageService, job: ImageJob, attempt: Attempt, key: str | None, info: RequestInfo
) -> Outcome:
    """One target with one key; a durable job's journal checkpoints it (or resumes it)."""
    provider, model = attempt.provider, attempt.model
    task = provider.tasks[attempt.task]
    size = fitted(job.size, model.sizes)
    base_url = provider.base_url if not provider.on_gateway else info.self_url + provider.base_url
    sink = (
        StreamSink(info, job.n, result_context(svc, provider, key, base_url, info))
        if info.streaming
        else None
    )
    journal = info.journal
    executor = Executor(
        svc.client,
        provider,
        base_url,
        key,
        info.on_progress,
        svc.poll_scale,
        on_partial=sink.partial if sink is not None and info.on_partial else None,
        on_image=sink.image if sink is not None else None,
        clock=info.clock,
        extra_headers=svc.internal_headers if provider.on_gateway else None,
        cancelling=journal.cancelled_by_client if journal is not None else None,
    )
    if journal is not None and journal.resume_from is None:
        kid = key_id(svc, provider, key, info)
        relayed = info.relay is not None
        await journal.attempt(attempt.route, provider.id, model.name, attempt.task, kid, relayed)
    polling = svc.metrics.polling if task.polls else None
    if polling is not None:
        polling.inc()
    try:
        per_call = model.images_per_call or task.images_per_call
        if 0 < job.n <= per_call:  # one call (call_counts), the common case: awaited with
            only = _begin(svc, job, attempt, size, key, info, executor, 0, job.n)  # no frame
            try:
                results: list[CallResult | BaseException] = [await only]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                results = [exc]
        else:
            calls = _Calls(svc, job, attempt, size, key, info, executor)
            begun = _begun(calls, call_counts(job.n, per_call), task.parallel)
            del calls
            results = await settled(begun)
        images: list[ImageRef] = []
        failures: list[UpstreamFailure] = []
        first: CallResult | None = None  # its revised prompt and usage are the answer's
        for r in results:
            if isinstance(r, UpstreamFailure):
                failures.append(r)
            elif isinstance(r, BaseException):
                raise r
            else:
                images.extend(r.images)
                if first is None:
                    first = r
        if not images:
            raise most_informative(failures)
        if len(images) > job.n:  # (no copy of the list when it holds n or fewer: nearly always)
            del images[job.n :]
        if sink is not None:
            data = await sink.finish()  # the client has these already
            if not data:
                raise most_informative(sink.failures)
        else:
            fmt = job.response_format or attempt.response_format  # response_format(), inline
            rehost = attempt.rehost
            data = []  # (a loop, not a comprehension: no function call of its own)
            for ref in images:
                if (item := passed_through(ref, fmt, rehost)) is not None:
                    data.append(item)
            if len(data) < len(images):  # a download or a store: not the common case
                data = await _normalise(svc, job, attempt, key, base_url, images, info)
    except UpstreamFailure:
        if sink is not None:
            await sink.flush()
        raise
    finally:
        if polling is not None:
            polling.dec()
        if sink is not None:
            sink.cancel()  # images of a failed attempt are not handed out late
    assert first is not None  # else no images: raised above
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
        size_adjusted=job.size is not None and job.size != (size.width, size.height),
    )


async def _normalise(
    svc: ImageService,
    job: ImageJob,
    attempt: Attempt,
    key: str | None,
    base_url: str,
    images: list[ImageRef],
    info: RequestInfo,
) -> list[ClientItem]:
    """The images as the client asked for them, when some are not passed through as they
    are (run_attempt tries that first): downloaded, stored, encoded."""
    fmt = response_format(job, attempt)
    provider = attempt.provider
    ctx = result_context(svc, provider, key, base_url, info)
    ctx.meta = {
        "request_id": info.request_id,
        "route": attempt.route,
        "provider": provider.id,
        "model": attempt.model.name,
        "size": f"{job.size[0]}x{job.size[1]}" if job.size is not None else None,
        "client": info.client,  # clients.yaml name
        "user": job.user,  # OpenAI's end-user id, as the caller sent it
        "prompt": job.prompt if svc.storage.config.store_prompts else None,
    }
    outs = await settled([to_client(ref, fmt, attempt.rehost, ctx) for ref in images])
    data = [o for o in outs if isinstance(o, dict)]
    errors = [o for o in outs if isinstance(o, BaseException)]
    for err in errors:
        if not isinstance(err, UpstreamFailure):
            raise err
    if not data:
        raise most_informative([e for e in errors if isinstance(e, UpstreamFailure)])
    return data


def result_context(
    svc: ImageService, provider: ProviderSpec, key: str | None, base_url: str, info: RequestInfo
) -> ResultContext:
    scope = DownloadScope(
        base_url,
        provider.auth.send_to,
        provider.private_origins,
        provider.auth,
        key,
        svc.internal_headers if provider.on_gateway else None,
    )
    return ResultContext(
        svc.session,
        svc.storage,
        info.public_url,
        svc.fetch_session,
        svc.fetch_policy,
        scope,
        svc.max_download,
        clock=info.clock,
    )


def key_id(
    svc: ImageService, provider: ProviderSpec, key: str | None, info: RequestInfo
) -> str | None:
    """Which pool key an attempt uses, as a checkpoint names it: its non-reversible id, the
    same on every replica whatever the key's place in the list (None: none, or relayed)."""
    if key is None or info.relay is not None or key not in provider.auth.keys:
        return None
    return svc.key_ids(provider.id, key)


@dataclass(slots=True)
class _Calls:
    """How the calls of an attempt with several begin: an object of its own rather than
    closures, so that the attempt's frame (a polling job waits in it for minutes) holds no
    cell per name. (A single call begins with `_begin` directly: no object at all.)"""

    svc: ImageService
    job: ImageJob
    attempt: Attempt
    size: Size
    key: str | None
    info: RequestInfo
    executor: Executor

    def begin(self, index: int, count: int) -> Coroutine[Any, Any, CallResult]:
        """`_begin` with the attempt's values."""
        return _begin(
            self.svc, self.job, self.attempt, self.size, self.key, self.info, self.executor,
            index, count,
        )  # fmt: skip

    async def in_turn(self, gate: asyncio.Semaphore, index: int, count: int) -> CallResult:
        async with gate:  # the call begins once a slot is free
            return await self.begin(index, count)


def _begin(
    svc: ImageService,
    job: ImageJob,
    attempt: Attempt,
    size: Size,
    key: str | None,
    info: RequestInfo,
    executor: Executor,
    index: int,
    count: int,
) -> Coroutine[Any, Any, CallResult]:
    """Call `index` as it begins: its seed, its checkpoint hooks, its context; the
    executor's coroutine, awaited without a frame of this attempt's around it."""
    task = attempt.provider.tasks[attempt.task]
    journal = info.journal
    seed: Any = svc.rng.getrandbits(31)  # a seed, not a secret: no system entropy
    hooks = None
    if journal is not None and journal.resume_from is not None:
        seed = (resumed_call(journal, index) or {}).get("random_seed", seed)
        hooks = resumed_hooks(journal, task, index, count, key)
    elif journal is not None:
        hooks = journal.hooks(index, count, seed, key)
    # the attempt's part of the context is made per call, not kept beside the calls'
    base = base_context(
        job,
        attempt,
        size,
        key,
        info.request_id,
        stream=info.streaming,
        partial_images=info.partial_images,
    )
    return executor.run(task, with_call(base, job, index, count, seed), hooks)


def _begun(
    calls: _Calls, counts: list[int], parallel: int
) -> list[Coroutine[Any, Any, CallResult]]:
    """The attempt's calls, `parallel` at a time (no semaphore when all of them fit: one
    call, usually); when one cannot begin (its checkpoint does not resume), those made
    before it are closed, never awaited."""
    gate = asyncio.Semaphore(parallel) if len(counts) > parallel else None
    made: list[Coroutine[Any, Any, CallResult]] = []
    try:
        for index, count in enumerate(counts):
            made.append(
                calls.begin(index, count) if gate is None else calls.in_turn(gate, index, count)
            )
    except BaseException:
        for call in made:
            call.close()
        raise
    return made


async def settled(awaitables: list[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    """gather(..., return_exceptions=True), without a task per item when there is only one
    (the common n=1 case: no task creation or scheduling on the hot path)."""
    if len(awaitables) == 1:
        try:
            return [await awaitables[0]]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return [exc]
    return list(await asyncio.gather(*awaitables, return_exceptions=True))
