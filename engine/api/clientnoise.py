"""Log what a client can cause (a malformed request line, a disconnect mid-upload) as one line
at WARNING or INFO, without a traceback and at most `burst` lines per `window` seconds: a
client must not be able to fill the log, nor bury the gateway's own errors in it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

from .bodywatch import BodyTimeout

log = logging.getLogger("pixgate.client")


class Limiter:
    """At most `burst` lines per `window`; the next line after a quiet spell says how many
    were left out."""

    def __init__(
        self, burst: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self._start = -window
        self._count = 0
        self.suppressed = 0

    def allow(self) -> tuple[bool, int]:
        """(log this line?, lines left out since the last one logged)."""
        now = self.clock()
        if now - self._start >= self.window:
            self._start, self._count = now, 0
        if self._count >= self.burst:
            self.suppressed += 1
            return False, 0
        self._count += 1
        left_out, self.suppressed = self.suppressed, 0
        return True, left_out


LIMITER = Limiter()


def note(level: int, message: str, *args: object) -> None:
    """Log one rate-limited line about a client's doing."""
    allowed, left_out = LIMITER.allow()
    if not allowed:
        return
    if left_out:
        message += " (%d similar lines left out)"
        args = (*args, left_out)
    log.log(level, message, *args)


def first_line(exc: BaseException) -> str:
    """The error in one short line; the client's bytes it quotes cannot forge log lines."""
    text = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
    text = "".join(c if c.isprintable() else "?" for c in " ".join(str(text).split()))
    return text[:160] or type(exc).__name__


class ServerNoise(logging.Filter):
    """On aiohttp's `aiohttp.server` logger: a request aiohttp could not parse, or a client
    that vanished, becomes one rate-limited WARNING line on `pixgate.client` (no traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BodyTimeout):
            # aiohttp's lingering close meets the body the gateway cut off: the client has
            # its 408 already, and the access log has the request.
            return False
        if not isinstance(exc, HttpProcessingError | ConnectionError):
            return True
        note(logging.WARNING, "malformed request from a client: %s", first_line(exc))
        return False


def quiet_aiohttp() -> None:
    """Idempotent: `create_app` calls it for every app."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ServerNoise) for f in server.filters):
        server.addFilter(ServerNoise())
