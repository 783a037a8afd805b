"""The pieces of a job takeover that need no fleet: a resume finds its key by id wherever the
list now has it (and not at all once it is gone), and a job's usage and budget are settled by
one run only, however many replicas end it."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from engine.api.metering import metered
from engine.config.loader import build_snapshot
from engine.runtime.calls.checkpoint import Journal, NotResumable, Settle
from engine.runtime.job import ImageJob
from engine.runtime.request import Outcome, RequestInfo
from engine.runtime.resume import saved_key
from engine.state import KeyIds, MemoryState
from engine.usage.budget import Hold
from engine.usage.meter import Meter
from engine.usage.windows import day_of
from tests.gateway import REPO


def test_the_key_is_found_by_its_id_wherever_it_is_and_gone_is_not_resumable() -> None:
    ids = KeyIds("takeover-secret-0123456789")
    service: Any = SimpleNamespace(key_ids=ids)
    auth = SimpleNamespace(keys=["sk-one", "sk-two"], required=True)
    attempt: Any = SimpleNamespace(provider=SimpleNamespace(id="p", auth=auth))
    saved = {"key_id": ids("p", "sk-two")}
    assert "sk-two" not in str(saved)
    assert saved_key(service, attempt, saved) == "sk-two"
    auth.keys = ["sk-two", "sk-three", "sk-one"]  # reordered, and one more
    assert saved_key(service, attempt, saved) == "sk-two"
    auth.keys = ["sk-one", "sk-three"]
    with pytest.raises(NotResumable, match="no longer in this replica's pool"):
        saved_key(service, attempt, saved)


async def test_a_job_is_settled_once_whichever_runs_end_it() -> None:
    snapshot = build_snapshot(REPO, {}).snapshot
    assert snapshot is not None
    store = MemoryState()
    meter = Meter(store)
    job = ImageJob(task="generate", prompt="x", model="demo")

    async def settle_once(settle: Settle) -> None:  # as JobManager: set-if-absent in the state
        if await store.claim_first("imgjob_x:settled", {"object": "mark"}, 60):
            await settle()

    async def made() -> Outcome:
        return Outcome([{"url": "https://img.test/a.png"}], "demo", "demo", "demo-v1", 1)

    for _ in range(2):  # the replica that died after settling, then the one that took over
        journal = Journal(_save, settle_once=settle_once)
        info = RequestInfo("r", "http://gw", "http://gw", journal=journal)
        hold = Hold(("budget:{c}:day:x",), (60.0,), 250_000)
        await metered(meter, "c", job, snapshot, info, hold, made())
    rows = await meter.usage.query(*_today(meter), ("client",))
    assert [(r["client"], r["requests"], r["images"]) for r in rows] == [("c", 1, 1)]
    spent = await store.get_usage("budget:{c}:day:x")
    assert spent.get("spent_micro_usd", 0.0) == -250_000  # settled once: the estimate given back


async def _save(data: dict[str, Any]) -> None:
    return None


def _today(meter: Meter) -> tuple[dt.date, dt.date]:
    day = dt.date.fromisoformat(day_of(meter.now()))
    return day, day
