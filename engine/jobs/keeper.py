"""Keeps jobs alive across replicas: renews the leases of the jobs run here (and stops those
a client cancelled on another replica), and sweeps for jobs whose replica died.

Every replica runs both loops. A lease lapses `lease_ttl` after its replica stopped renewing
it; the first sweeper to take it (an atomic compare-and-set in the state backend) adopts the
job. Sweeps are jittered so a fleet does not sweep in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from .manager import ABANDON, JobManager
from .records import ACTIVE

log = logging.getLogger("pixgate.jobs")


class Keeper:
    def __init__(self, manager: JobManager, rng: random.Random | None = None) -> None:
        self.manager = manager
        self.rng = rng or random.Random()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._renewing()), asyncio.create_task(self._sweeping())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renewing(self) -> None:
        while True:
            await asyncio.sleep(self.manager.config.renew_every)
            try:
                await self.renew()
            except Exception:
                log.exception("jobs: renewing leases failed")
            try:
                await self.manager.settle_pending()
            except Exception:
                log.exception("jobs: settling jobs ended during a Redis outage failed")

    async def _sweeping(self) -> None:
        while True:
            await asyncio.sleep(self.manager.config.lease_ttl / 2 * self.rng.uniform(0.5, 1.5))
            try:
                await self.sweep()
            except Exception:
                log.exception("jobs: sweeping for lost jobs failed")

    async def renew(self) -> None:
        manager, store, config = self.manager, self.manager.store, self.manager.config
        ids = manager.local_ids()
        if not ids:
            return
        for job_id in ids:
            if not await store.lease_job(job_id, config.holder, config.lease_ttl):
                log.warning("job %s: its lease went to another replica; stopping here", job_id)
                manager.stop_local(job_id, ABANDON)
        for job_id in await store.cancel_flags(ids):
            manager.stop_local(job_id, None)  # cancelled through another replica
        await manager.save_running()

    async def sweep(self) -> None:
        """Adopt every active job whose lease has lapsed (and forget ids whose records are
        final or gone)."""
        manager, store, config = self.manager, self.manager.store, self.manager.config
        for job_id in await store.active_jobs():
            if manager.is_local(job_id) or not manager.has_room():
                continue
            if not await store.lease_job(job_id, config.holder, config.lease_ttl):
                continue  # alive elsewhere (or another sweeper was first)
            if manager.is_local(job_id):
                continue
            record = await store.get_job(job_id)
            if record is None or record.get("status") not in ACTIVE:
                await store.mark_active(job_id, False)
                await store.release_job(job_id, config.holder)
                continue
            await manager.adopt(record)
