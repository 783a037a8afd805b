"""Runs jobs in background tasks of this process and keeps their records in the shared state.

Limits on queued + running jobs count this process's own tasks (per client and in total).
A running job holds a lease in the state backend, renewed while it runs (keeper.py); a job
whose replica died is adopted by another one, which goes on from its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..runtime.calls.checkpoint import Journal, Settle
from ..state.base import JobStore
from .config import JobConfig
from .records import ACTIVE, FINAL, new_id, new_record

log = logging.getLogger("pixgate.jobs")
Progress = Callable[[Any], None]
# A job's work: its result, or (its result, fields to add to the record, e.g. its cost)
Work = Callable[
    [Progress, Journal], Awaitable[dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]]
]
Release = Callable[[], Awaitable[None]]
Failure = Callable[[BaseException], dict[str, Any]]  # an exception -> an OpenAI error object
Finished = Callable[[dict[str, Any]], Awaitable[None]]  # e.g. the webhook delivery
# A lost job's record -> how to go on with it (resume or resubmit); raises JobLost.
Recover = Callable[[dict[str, Any]], Awaitable[tuple[Work, Failure]]]
# A cancelled job's record whose replica died -> its provider's cancel step, sent from here.
CancelUpstream = Callable[[dict[str, Any]], Awaitable[None]]
HANDOFF, ABANDON = "handoff", "abandon"  # a local run stops, the job goes on elsewhere


class JobLost(Exception):
    """The replica running the job died and the job cannot go on (the message says why)."""


def lost_error(message: str) -> dict[str, Any]:
    return {"message": message, "type": "server_error", "param": None, "code": "job_lost"}


class TooManyJobs(Exception):
    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"too many queued or running image jobs ({scope} limit {limit})")


class JobManager:
    def __init__(self, store: JobStore, config: JobConfig) -> None:
        self.store = store
        self.config = config
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._owners: dict[str, str] = {}  # running job id -> owner
        self._records: dict[str, dict[str, Any]] = {}  # the live copy of a local job
        self._changed: dict[str, asyncio.Event] = {}
        self._journals: dict[str, Journal] = {}
        self._stopping: dict[str, str] = {}  # job id -> HANDOFF | ABANDON
        # Settlements of jobs ended while the shared state could not be asked whether they
        # were the job's first: claimed again at every lease renewal (keeper.py).
        self._unsettled: dict[str, Settle] = {}
        self.on_finished: Finished | None = None
        self.recover: Recover | None = None
        self.cancel_upstream: CancelUpstream | None = None

    def local_ids(self) -> list[str]:
        return list(self._tasks)

    def is_local(self, job_id: str) -> bool:
        return job_id in self._records

    def has_room(self) -> bool:
        return self.active() < self.config.total

    def active(self, owner: str | None = None) -> int:
        return sum(1 for o in self._owners.values() if owner is None or o == owner)

    async def submit(
        self,
        owner: str,
        model: str | None,
        work: Work,
        failure: Failure,
        release: Release,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if self.active(owner) >= self.config.per_owner:
            raise TooManyJobs("per client", self.config.per_owner)
        if self.active() >= self.config.total:
            raise TooManyJobs("gateway", self.config.total)
        job_id = new_id()
        record = new_record(job_id, owner, model)
        record.update(extra or {})
        self._records[job_id] = record  # local from now: this replica's sweeper leaves it
        await self.store.put_job(job_id, record, self.config.ttl)
        await self.store.index_job(owner, job_id, record["created"], self.config.ttl)
        await self.store.lease_job(job_id, self.config.holder, self.config.lease_ttl)
        await self.store.mark_active(job_id, True)  # leased first: no sweeper takes it
        self._start(record, work, failure, release)
        return dict(record)

    def _start(
        self, record: dict[str, Any], work: Work, failure: Failure, release: Release
    ) -> None:
        job_id = record["id"]
        self._records[job_id] = record
        self._owners[job_id] = record["owner"]
        self._changed[job_id] = asyncio.Event()

        async def checkpoint(data: dict[str, Any]) -> None:
            record["checkpoint"] = data
            await self._save(job_id)

        async def settle_once(settle: Settle) -> None:  # usage and budget, once (metering)
            if not await self._settle_first(job_id, settle):
                return
            log.warning("job %s: Redis unreachable: its settlement waits until it is", job_id)
            self._unsettled[job_id] = settle

        self._journals[job_id] = Journal(checkpoint, settle_once=settle_once)
        self._tasks[job_id] = asyncio.create_task(self._run(job_id, work, failure, release))

    async def adopt(self, record: dict[str, Any]) -> None:
        """Go on with a job whose replica died (its lease is ours now): resume, resubmit or
        fail it as `recover` decides; a job asked to cancel ends cancelled."""
        job_id = record["id"]
        if self.is_local(job_id):
            return  # this replica took it meanwhile (a DELETE here)
        self._records[job_id] = record
        log.warning("job %s: its replica stopped; this replica takes it over", job_id)
        if job_id in await self.store.cancel_flags([job_id]):
            record["status"] = "cancelled"  # asked on a replica that could not end it then
            await self._tell_upstream(record)
        elif self.recover is None:
            record.update(status="failed", error=lost_error("the job's replica stopped"))
        else:
            try:
                work, failure = await self.recover(record)
            except JobLost as exc:
                record.update(status="failed", error=lost_error(str(exc)))
            except Exception:  # never leave it running with nobody to run it
                log.exception("job %s: taking it over failed", job_id)
                record.update(status="failed", error=lost_error("the job could not go on"))
            else:
                self._start(record, work, failure, _nothing)
                return
        record["finished_at"] = int(time.time())
        await self._finish(job_id)

    async def _run(self, job_id: str, work: Work, failure: Failure, release: Release) -> None:
        record = self._records[job_id]
        try:
            record["status"] = "running"
            await self._save(job_id)

            def progress(value: Any) -> None:
                record["progress"] = value
                self._touch(job_id)

            try:
                result = await work(progress, self._journals[job_id])
            except asyncio.CancelledError:
                if job_id not in self._stopping:
                    record["status"] = "cancelled"
                raise
            except JobLost as exc:
                record.update(status="failed", error=lost_error(str(exc)))
            except Exception as exc:  # the job's answer, not this task's crash
                record.update(status="failed", error=failure(exc))
            else:
                if isinstance(result, tuple):
                    result, fields = result
                    record.update(fields)
                record.update(status="succeeded", result=result, progress=100)
        finally:
            with contextlib.suppress(Exception):
                await release()
            self._tasks.pop(job_id, None)
            self._owners.pop(job_id, None)
            self._journals.pop(job_id, None)
            how = self._stopping.pop(job_id, None)
            if how is not None:
                await asyncio.shield(self._let_go(job_id, how))
            else:
                if record["status"] not in FINAL:
                    record["status"] = "cancelled"
                record["finished_at"] = int(time.time())
                await asyncio.shield(self._finish(job_id))

    async def _let_go(self, job_id: str, how: str) -> None:
        """This process stops running the job; another replica goes on with it."""
        with contextlib.suppress(Exception):
            if how == HANDOFF:  # shutting down: save the checkpoint, free the lease now
                await self._save(job_id)
                await self.store.release_job(job_id, self.config.holder)
        self._records.pop(job_id, None)
        self._changed.pop(job_id, None)

    def stop_local(self, job_id: str, how: str | None) -> None:
        """End the local run: None is the client's cancel (the upstream's cancel step runs);
        HANDOFF / ABANDON leave the job running for another replica."""
        task = self._tasks.get(job_id)
        if task is None:
            return
        if how is None:
            self._journals[job_id].client_cancelled = True
        else:
            self._stopping[job_id] = how
            self._journals[job_id].handed_over = True  # not settled here: where it ends
        task.cancel()

    async def save_running(self) -> None:
        """Store the live records (their checkpoints' poll counts) of the jobs run here."""
        for job_id in list(self._tasks):
            with contextlib.suppress(Exception):
                await self._save(job_id)

    async def _finish(self, job_id: str) -> None:
        record = self._records[job_id]
        record.pop("checkpoint", None)  # only a running job needs it (`request` renders events)
        with contextlib.suppress(Exception):
            await self._save(job_id)
            await self.store.mark_active(job_id, False)
            await self.store.release_job(job_id, self.config.holder)
        self._notify(job_id)
        if self.on_finished is not None:
            try:
                await self.on_finished(record)
            except Exception:
                log.exception("job %s: after-finish hook failed", job_id)
        self._records.pop(job_id, None)
        self._changed.pop(job_id, None)

    async def _settle_first(self, job_id: str, settle: Settle) -> bool:
        """Run `settle` if this is the job's first settlement fleet-wide; True when the state
        cannot tell now (each replica's memory would say first: a job settled twice)."""
        mark = {"object": "image.job.settlement"}
        first = await self.store.claim_first(f"{job_id}:settled", mark, self.config.ttl)
        if first:
            await settle()
        return first is None

    async def settle_pending(self) -> None:
        """Claim again the settlements that waited for the shared state (keeper.py)."""
        for job_id, settle in list(self._unsettled.items()):
            if await self._settle_first(job_id, settle):
                return  # still unreachable: the rest wait too
            del self._unsettled[job_id]

    def _touch(self, job_id: str) -> None:
        """Progress: wake local waiters now; the store gets it with the next save."""
        task = asyncio.ensure_future(self._save(job_id))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _save(self, job_id: str) -> None:
        record = self._records.get(job_id)
        if record is not None:
            await self.store.put_job(job_id, record, self.config.ttl)
            self._notify(job_id)

    def _notify(self, job_id: str) -> None:
        event = self._changed.get(job_id)
        if event is not None:
            event.set()
            self._changed[job_id] = asyncio.Event()

    async def save(self, record: dict[str, Any]) -> None:
        """Store a record changed outside its run (a webhook delivery log)."""
        await self.store.put_job(record["id"], record, self.config.ttl)

    async def get(self, job_id: str, owner: str | None) -> dict[str, Any] | None:
        """The job, if `owner` may see it (None: the admin sees every job)."""
        record = self._records.get(job_id)
        record = dict(record) if record is not None else await self.store.get_job(job_id)
        if record is None or record.get("object") != "image.job":
            return None
        if owner is not None and record.get("owner") != owner:
            return None
        return record

    async def wait(self, job_id: str, owner: str | None, seconds: float) -> dict[str, Any] | None:
        """The job once it is final, or as it is when `timeout` runs out."""
        deadline = time.monotonic() + min(seconds, self.config.max_wait)
        while True:
            record = await self.get(job_id, owner)
            left = deadline - time.monotonic()
            if record is None or record["status"] not in ACTIVE or left <= 0:
                return record
            event = self._changed.get(job_id)
            if event is None:  # another replica runs it: poll the store
                await asyncio.sleep(min(left, 0.5))
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 5.0)):
                    await event.wait()

    async def changes(
        self, job_id: str, owner: str | None, seconds: float
    ) -> dict[str, Any] | None:
        """The job after its next change (or `seconds`), for event streams."""
        event = self._changed.get(job_id)
        if event is None:
            await asyncio.sleep(min(seconds, 0.5))
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await event.wait()
        return await self.get(job_id, owner)

    async def cancel(self, job_id: str, owner: str | None) -> dict[str, Any] | None:
        record = await self.get(job_id, owner)
        if record is None or record["status"] not in ACTIVE:
            return record
        task = self._tasks.get(job_id)
        if task is not None:
            self.stop_local(job_id, None)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return await self.get(job_id, owner)
        if not await self.store.lease_job(job_id, self.config.holder, self.config.lease_ttl):
            # Another replica runs it: ask it to stop (it checks at every lease renewal).
            await self.store.flag_cancel(job_id, self.config.ttl)
            deadline = time.monotonic() + min(max(2.5 * self.config.renew_every, 1.0), 30.0)
            while time.monotonic() < deadline:
                await asyncio.sleep(min(0.1, self.config.renew_every / 4))
                found = await self.get(job_id, owner)
                if found is None or found["status"] not in ACTIVE:
                    return found
            if not await self.store.lease_job(job_id, self.config.holder, self.config.lease_ttl):
                return await self.get(job_id, owner)  # its replica will, at its next renewal
        if self.is_local(job_id):  # this replica's sweeper adopted it meanwhile
            return await self.cancel(job_id, owner)
        # Nobody runs it (its replica died): end it here, and tell the upstream.
        record.update(status="cancelled", finished_at=int(time.time()))
        self._records[job_id] = record
        await self._tell_upstream(record)
        await self._finish(job_id)
        return await self.get(job_id, owner)

    async def _tell_upstream(self, record: dict[str, Any]) -> None:
        """The client's cancel of a job whose replica died: the provider's cancel step."""
        if self.cancel_upstream is None or not record.get("checkpoint"):
            return
        try:
            await self.cancel_upstream(record)
        except Exception:  # best effort, as on the replica running it: the job ends anyway
            log.exception("job %s: the upstream cancel failed", record["id"])

    async def list(
        self, owner: str, before: float | None, limit: int
    ) -> tuple[list[dict[str, Any]], float | None]:
        """The owner's jobs newest first, and the cursor of the next page (None: no more)."""
        rows = await self.store.job_ids(owner, before, limit + 1)
        jobs = []
        for job_id, _ in rows[:limit]:
            record = await self.get(job_id, owner)
            if record is not None:
                jobs.append(record)
        more = rows[limit][1] if len(rows) > limit else None
        return jobs, (rows[limit - 1][1] if more is not None and limit else None)

    async def close(self) -> None:
        """Shutting down: with durable records, the jobs of this process are handed over
        (another replica resumes them at once); else they end as cancelled."""
        tasks = list(self._tasks.values())
        for job_id in list(self._tasks):
            self.stop_local(job_id, HANDOFF if self.store.durable_jobs else None)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        with contextlib.suppress(Exception):
            await self.settle_pending()  # a last try
        if self._unsettled:
            log.warning(
                "%d jobs ended while Redis was unreachable stay unsettled (their usage and "
                "budget); their records in Redis, if any, let another replica settle them",
                len(self._unsettled),
            )


async def _nothing() -> None:
    return None
