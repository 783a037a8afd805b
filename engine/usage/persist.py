"""Usage and budget totals of a gateway without Redis survive its restart: they are written to
a JSON file (atomically: a temporary file, fsync, rename) every FLUSH_EVERY seconds when they
changed and at shutdown, and read back at start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ..state.memory import MemoryState

log = logging.getLogger("pixgate.usage")
FLUSH_EVERY = 10.0
VERSION = 1


class UsageFile:
    def __init__(self, state: MemoryState, path: Path, every: float = FLUSH_EVERY) -> None:
        self.state = state
        self.path = path
        self.every = every
        self._written = -1  # the state's change count when last written
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        saved = await asyncio.to_thread(self._read)
        if saved is not None:
            self.state.import_usage(saved)
        self._written = self.state.usage_changes
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> None:
        changes = self.state.usage_changes
        if changes == self._written:
            return
        data = {"version": VERSION, **self.state.export_usage()}
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            log.warning("usage: could not write %s (%s); totals stay in memory", self.path, exc)
            return
        self._written = changes

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.flush()

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("usage: ignoring unreadable %s (%s)", self.path, exc)
            return None
        return data if isinstance(data, dict) and data.get("version") == VERSION else None

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".usage-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
