"""Admin sessions: a signed, expiring cookie, a CSRF token bound to it, and login back-off.

The cookie carries its own expiry and is signed with a key derived from PIXGATE_ADMIN_KEY, so
every worker and replica that shares the admin key accepts it, and changing the admin key
ends every session. Logging out forgets the session in this process (and clears the cookie).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "pixgate_admin"
SESSION_TTL = 8 * 3600.0
BACKOFF_BASE = 1.0  # seconds after the first failed login; doubles with each failure
BACKOFF_CAP = 300.0
MAX_TRACKED = 10_000  # addresses remembered for back-off (bounded memory)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(slots=True)
class Sessions:
    admin_key: str
    ttl: float = SESSION_TTL
    clock: Callable[[], float] = time.time
    _revoked: dict[str, float] = field(default_factory=dict)  # session id -> its expiry

    def _sign(self, purpose: str, payload: str) -> str:
        key = hashlib.sha256(b"pixgate-admin-session:" + self.admin_key.encode()).digest()
        return _b64(hmac.new(key, f"{purpose}:{payload}".encode(), hashlib.sha256).digest())

    def issue(self) -> str:
        """A new session cookie value: `<id>.<expiry>.<signature>`."""
        sid = secrets.token_urlsafe(18)
        payload = f"{sid}.{int(self.clock() + self.ttl)}"
        return f"{payload}.{self._sign('session', payload)}"

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a valid, unexpired, not revoked cookie, else None."""
        if not cookie or len(cookie) > 256:
            return None
        payload, _, signature = cookie.rpartition(".")
        sid, _, expiry = payload.partition(".")
        if not (sid and expiry.isdigit()):
            return None
        if not hmac.compare_digest(signature, self._sign("session", payload)):
            return None
        if int(expiry) <= self.clock() or sid in self._revoked:
            return None
        return sid

    def csrf(self, sid: str) -> str:
        return self._sign("csrf", sid)

    def csrf_ok(self, sid: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token or "", self.csrf(sid))

    def revoke(self, sid: str) -> None:
        now = self.clock()
        for old in [s for s, until in self._revoked.items() if until <= now]:
            del self._revoked[old]
        self._revoked[sid] = now + self.ttl


@dataclass(slots=True)
class LoginThrottle:
    """Exponential back-off per client address after failed logins."""

    clock: Callable[[], float] = field(default=time.monotonic)
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)  # count, next allowed

    def wait(self, address: str) -> float:
        """Seconds this address must still wait before it may try again (0: go ahead)."""
        _, allowed = self._failures.get(address, (0, 0.0))
        now: float = self.clock()
        return max(0.0, allowed - now)

    def failed(self, address: str) -> float:
        count = self._failures.get(address, (0, 0.0))[0] + 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (count - 1))
        if len(self._failures) >= MAX_TRACKED and address not in self._failures:
            self._failures.pop(next(iter(self._failures)))
        self._failures[address] = (count, self.clock() + delay)
        return delay

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
