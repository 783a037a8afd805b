"""The overview across a fleet.

With Redis state every replica (each worker process) shares its recent figures there every
SHARE_EVERY seconds (only the minutes that changed, off every client's request path), and
the overview merges the figures of every replica seen in the last hour, its own taken fresh
from memory. With memory state, or while Redis cannot be read, the overview shows this
replica's own figures, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..api.keys import STATE
from . import figures
from .figures import MINUTES, Bucket, Key, Series
from .recent import ERRORS, RecentStats

if TYPE_CHECKING:  # redis is imported only by gateways that use it
    from ..state.board import FleetBoard, Published

log = logging.getLogger("pixgate.admin")
SHARE_EVERY = 2.0
LIVE_WITHIN = 15.0  # a replica silent for longer is listed as not live (stopped, or cut off)
UNREACHABLE = (
    "Redis cannot be read right now: these figures are this replica's own, not the fleet's"
)


@dataclass(slots=True)
class Fleet:
    recent: RecentStats
    board: FleetBoard | None  # None: memory state, nothing shared
    name: str = ""  # PIXGATE_REPLICA_ID when set (Redis state always has a name)
    info: dict[str, Any] = field(default_factory=dict)
    _written: set[int] = field(default_factory=set)  # minutes in Redis, dropped as they age
    _rewrite: bool = False  # write everything next time

    def __post_init__(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        replica = self.board.replica if self.board else self.name or f"{host}:{pid}"
        self.info = {"replica": replica, "host": host, "pid": pid, "started": time.time()}

    @property
    def member(self) -> str:
        """This process's name on the board: workers of one replica share its id."""
        return f"{self.info['replica']}/{self.info['pid']}"

    async def share(self, config_version: str) -> bool:
        """Write what changed since the last share; kept for the next one when Redis fails."""
        if self.board is None:
            return False
        minutes, errors = self.recent.take_changes(everything=self._rewrite)
        oldest = self.recent.now_minute() - MINUTES + 1
        drop = sorted(m for m in self._written if m < oldest)
        info = {**self.info, "config_version": config_version}
        found = await self.board.publish(
            self.member, info, minutes, drop, errors, replace=self._rewrite
        )
        if found is None:
            self.recent.give_back(list(minutes), errors)
            return False
        self._written.update(minutes)
        self._written.difference_update(drop)
        # Not there before: a Redis restarted empty (or our keys expired while we were cut
        # off). The next share writes every minute and error this replica still has.
        self._rewrite = not found and not self._rewrite
        return True

    async def sharing(self, app: web.Application) -> AsyncIterator[None]:
        """While the app runs (Redis state only): share this replica's figures, and once
        more at the end, so the requests drained by a shutdown count too."""
        if self.board is None:
            yield
            return
        task = asyncio.create_task(self._share_loop(app))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.share(app[STATE].snapshot.version)  # bounded by the board's timeout

    async def _share_loop(self, app: web.Application) -> None:
        while True:
            try:
                await self.share(app[STATE].snapshot.version)
            except Exception:  # a bug here must not end the sharing for good
                log.exception("admin overview: sharing figures failed")
            await asyncio.sleep(SHARE_EVERY)


async def figures_of(fleet: Fleet, config_version: str) -> dict[str, Any]:
    """The overview's figures: the fleet's with Redis, else (or while Redis cannot be read)
    this replica's own, with a notice saying which."""
    now = time.time()
    now_minute = fleet.recent.now_minute()
    buckets = fleet.recent.buckets()
    own = {**fleet.info, "config_version": config_version, "last_seen": now, "self": True,
           "live": True, "requests_60m": _count(buckets, now_minute)}  # fmt: skip
    replicas = [own]
    errors = [{**e, "replica": own["replica"]} for e in fleet.recent.errors]
    scope, notice = "replica", None
    published = await fleet.board.gather() if fleet.board is not None else None
    if fleet.board is not None and published is None:
        notice = UNREACHABLE
    for other in published or []:
        if other.member == fleet.member:
            continue  # this process's own figures come fresh from memory
        theirs = _buckets(other)
        buckets += theirs
        name = str(other.info.get("replica") or other.member)
        errors += [e for e in (_error(raw, name) for raw in other.errors) if e is not None]
        replicas.append(_replica(other, name, now, _count(theirs, now_minute)))
    if published is not None:
        scope = "fleet"
        replicas[1:] = sorted(replicas[1:], key=lambda r: str(r["replica"]))
    errors.sort(key=lambda e: -float(e["at"]))
    return {
        "scope": scope,
        "notice": notice,
        "replicas": replicas,
        "last_5m": figures.window(buckets, now_minute, 5),
        "last_60m": figures.window(buckets, now_minute, 60),
        "timeline": figures.timeline(buckets, now_minute),
        "errors": errors[:ERRORS],
    }


def _buckets(other: Published) -> list[Bucket]:
    out: list[Bucket] = []
    for minute, rows in other.minutes.items():
        series: dict[Key, Series] = {}
        for row in rows:
            parsed = Series.from_json(row)
            if parsed is not None:
                series[parsed[0]] = parsed[1]
        out.append((minute, series))
    return out


def _count(buckets: list[Bucket], now_minute: int) -> int:
    first = now_minute - MINUTES + 1
    return sum(s.count for minute, series in buckets if minute >= first for s in series.values())


def _replica(other: Published, name: str, now: float, requests: int) -> dict[str, Any]:
    info = other.info
    return {
        "replica": name,
        "host": str(info.get("host") or ""),
        "pid": info.get("pid") if isinstance(info.get("pid"), int) else None,
        "started": info.get("started") if isinstance(info.get("started"), float) else None,
        "config_version": str(info.get("config_version") or ""),
        "last_seen": other.seen,
        "self": False,
        "live": now - other.seen <= LIVE_WITHIN,
        "requests_60m": requests,
    }


def _error(raw: dict[str, Any], replica: str) -> dict[str, Any] | None:
    """Another replica's error, with the fields the panel shows and their types, or None."""
    try:
        return {
            "at": float(raw["at"]),
            "route": str(raw["route"]),
            "provider": str(raw["provider"]),
            "status": int(raw["status"]),
            "message": str(raw.get("message") or "")[:500],
            "replica": replica,
        }
    except (KeyError, TypeError, ValueError):
        return None
