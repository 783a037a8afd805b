"""The live log: the last lines of the gateway's log in memory, secrets masked before a
line is kept, and pushed to every open log stream of the panel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

LINES = 1000
QUEUE = 500  # lines a slow viewer may fall behind before it misses some
END: dict[str, Any] = {"level": "END"}  # tells a log stream that the gateway is stopping

Masker = Callable[[str], str]


class LogBuffer(logging.Handler):
    def __init__(self, mask: Masker, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.INFO)
        self.mask = mask
        self.loop = loop
        self.lines: deque[dict[str, Any]] = deque(maxlen=LINES)
        self._viewers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._seq = 0
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.mask(record.getMessage())
        except Exception:  # a log line must never break the code that logs it
            return
        with self._lock:
            self._seq += 1
            line = {
                "seq": self._seq,
                "at": record.created or time.time(),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
            }
            self.lines.append(line)
        if self._viewers:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self.loop:
                self._publish(line)
            else:  # a line logged from a worker thread
                with contextlib.suppress(RuntimeError):
                    self.loop.call_soon_threadsafe(self._publish, line)

    def _publish(self, line: dict[str, Any]) -> None:
        for queue in self._viewers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(line)

    def end_streams(self) -> None:
        """On shutdown: open log streams end, so they do not hold the drain up."""
        for queue in self._viewers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(END)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE)
        self._viewers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._viewers.discard(queue)

    def replay(self, count: int, minimum: int) -> list[dict[str, Any]]:
        with self._lock:
            lines = [ln for ln in self.lines if logging.getLevelName(ln["level"]) >= minimum]
        return lines[-count:] if count > 0 else []
