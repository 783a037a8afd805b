"""Admin sessions: signed, expiring, revocable cookies; CSRF tokens bound to a session;
exponential back-off after failed logins."""

from __future__ import annotations

from engine.panel.session import BACKOFF_CAP, LoginThrottle, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_cookie_is_valid_until_it_expires_or_is_revoked() -> None:
    clock = Clock()
    sessions = Sessions("admin-key", ttl=60, clock=clock)
    cookie = sessions.issue()
    sid = sessions.session_id(cookie)
    assert sid is not None
    clock.now += 59
    assert sessions.session_id(cookie) == sid
    clock.now += 2
    assert sessions.session_id(cookie) is None  # expired
    fresh = sessions.issue()
    fresh_sid = sessions.session_id(fresh)
    assert fresh_sid is not None
    sessions.revoke(fresh_sid)
    assert sessions.session_id(fresh) is None


def test_tampered_or_foreign_cookies_are_refused() -> None:
    sessions = Sessions("admin-key")
    cookie = sessions.issue()
    sid, expiry, signature = cookie.split(".")
    assert sessions.session_id(f"{sid}.{int(expiry) + 3600}.{signature}") is None
    assert sessions.session_id(f"other.{expiry}.{signature}") is None
    assert sessions.session_id(cookie[:-2]) is None
    assert Sessions("another-admin-key").session_id(cookie) is None  # key change ends it
    for junk in ("", ".", "..", "a.b.c", "x" * 1000):
        assert sessions.session_id(junk) is None


def test_csrf_token_belongs_to_one_session() -> None:
    sessions = Sessions("admin-key")
    a = sessions.session_id(sessions.issue())
    b = sessions.session_id(sessions.issue())
    assert a and b and a != b
    assert sessions.csrf_ok(a, sessions.csrf(a))
    assert not sessions.csrf_ok(a, sessions.csrf(b))
    assert not sessions.csrf_ok(a, None) and not sessions.csrf_ok(a, "")


def test_failed_logins_back_off_exponentially_per_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    assert throttle.wait("1.2.3.4") == 0
    delays = [throttle.failed("1.2.3.4") for _ in range(12)]
    assert delays[:4] == [1, 2, 4, 8] and delays[-1] == BACKOFF_CAP
    assert throttle.wait("1.2.3.4") == BACKOFF_CAP
    assert throttle.wait("5.6.7.8") == 0  # another address is not held up
    clock.now += BACKOFF_CAP
    assert throttle.wait("1.2.3.4") == 0
    throttle.succeeded("1.2.3.4")
    assert throttle.failed("1.2.3.4") == 1  # a success starts the count again
