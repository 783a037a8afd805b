"""Hot reload: build a whole new snapshot off the event loop, then swap one reference.

A build that fails changes nothing live (the last good config keeps serving) and is kept,
with every diagnostic, for GET /admin/config. Identical content is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import watchfiles

from ...config.loader import build_snapshot
from .state import GatewayState

log = logging.getLogger("pixgate.reload")
DEBOUNCE_MS = 300
WATCH_TICK_MS = 1000


@dataclass(slots=True)
class ReloadStats:
    """Reload counters, kept in one place for the metrics endpoint."""

    succeeded: int = 0
    failed: int = 0
    unchanged: int = 0
    last_success_at: float | None = None
    last_failure_at: float | None = None


@dataclass(slots=True)
class Rejected:
    at: float
    reason: str
    diagnostics: list[dict[str, object]]
    files: dict[str, str]


@dataclass(slots=True)
class ReloadResult:
    status: str  # "reloaded" | "unchanged" | "rejected"
    version: str
    diagnostics: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "version": self.version, "diagnostics": self.diagnostics}


class Reloader:
    def __init__(
        self,
        state: GatewayState,
        directory: Path,
        env: Mapping[str, str],
        *,
        polling: bool = False,
    ) -> None:
        self.state = state
        self.directory = directory
        self.env = env
        self.polling = polling
        self.stats = ReloadStats()
        self.last_rejected: Rejected | None = None
        self._lock = asyncio.Lock()
        self._stopping = False
        self._cycle = threading.Event()

    async def reload(self, reason: str) -> ReloadResult:
        async with self._lock:  # one build at a time; a burst of triggers queues up
            result = await asyncio.to_thread(build_snapshot, self.directory, self.env)
            current = self.state.snapshot
            if result.snapshot is None:
                self.stats.failed += 1
                self.stats.last_failure_at = time.time()
                diags = result.diagnostics.sorted()
                self.last_rejected = Rejected(
                    time.time(), reason, [d.as_dict() for d in diags], dict(result.files)
                )
                log.error("config rejected (%s); still serving version %s", reason, current.version)
                for diag in diags:
                    log.error("config: %s", diag.format())
                return ReloadResult("rejected", current.version, [d.format() for d in diags])
            new = result.snapshot
            if new.version == current.version:
                self.stats.unchanged += 1
                return ReloadResult("unchanged", current.version)
            self.state.shared.retain(new.providers)
            if new.routes.state != current.routes.state:
                log.warning("config: `state:` changed; it takes effect on the next restart")
            self.state.snapshot = new  # the swap: requests in flight keep the old one
            self.state.storage.use(new.storage)
            self.stats.succeeded += 1
            self.stats.last_success_at = time.time()
            for line in new.warning_lines():
                log.warning("config: %s", line)
            log.info("config reloaded (%s): %s -> %s", reason, current.version, new.version)
            return ReloadResult("reloaded", new.version)

    def watch_paths(self) -> list[Path]:
        """What to watch, not recursively: the config directory itself (routes.yaml, and the
        `..data` symlink a Kubernetes ConfigMap swaps), providers.d/ where its link points
        now, and the folders of keys files. Resolved, so a swapped symlink restarts the watch."""
        paths = [self.directory.resolve()]
        providers = self.directory / "providers.d"
        if providers.is_dir():
            paths.append(providers.resolve())
        for policy in self.state.snapshot.routes.policies.values():
            if policy.keys_file:
                folder = (self.directory / policy.keys_file).resolve().parent
                if folder.is_dir() and folder not in paths:
                    paths.append(folder)
        return paths

    async def watch(self) -> None:
        """Reload on every change; restart the watcher when the watched paths change."""
        while not self._stopping:
            paths = self.watch_paths()
            self._cycle = threading.Event()  # watchfiles polls is_set() from its own thread
            caught_up = False
            async for changes in watchfiles.awatch(
                *paths,
                debounce=DEBOUNCE_MS,
                step=50,
                force_polling=self.polling or None,
                poll_delay_ms=200,
                stop_event=self._cycle,
                recursive=False,
                ignore_permission_denied=True,
                rust_timeout=WATCH_TICK_MS,
                yield_on_timeout=True,
            ):
                if not changes and caught_up:
                    continue  # an idle tick
                # The first tick means the watcher is live: catch up on anything written while
                # it was starting (a no-op when nothing changed).
                caught_up = True
                await self.reload("files changed" if changes else "watch started")
                if self.watch_paths() != paths:
                    self._cycle.set()

    def stop(self) -> None:
        self._stopping = True
        self._cycle.set()
