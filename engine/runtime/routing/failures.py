"""Failure kinds from upstreams and how they reach the client."""

from __future__ import annotations

from dataclasses import dataclass

# kind -> (HTTP status for the client, OpenAI error type, OpenAI error code)
CLIENT_STATUS: dict[str, tuple[int, str, str]] = {
    "bad_request": (400, "invalid_request_error", "upstream_bad_request"),
    "content_policy": (400, "invalid_request_error", "content_policy_violation"),
    "rate_limited": (429, "rate_limit_error", "rate_limit_exceeded"),
    "quota": (429, "insufficient_quota", "insufficient_quota"),
    "bad_key": (502, "upstream_error", "upstream_auth_failed"),
    "upstream": (502, "upstream_error", "upstream_error"),
    "timeout": (504, "timeout_error", "upstream_timeout"),
}

# Kinds where trying another target cannot help: the request itself is the problem.
FINAL_KINDS = frozenset({"bad_request", "content_policy"})


@dataclass(slots=True)
class UpstreamFailure(Exception):
    """One upstream attempt failed; `message` keeps the upstream's reason, never a key."""

    kind: str
    message: str
    status: int | None = None
    retry_after: float | None = None
    provider: str | None = None

    def __str__(self) -> str:
        return self.message


def kind_for_status(status: int) -> str | None:
    """Default classification when no provider rule matched.

    Only 400/413/422 blame the client's request. Other 4xx (404 unknown path or model, 405,
    409, 415) come from how the gateway is configured, so another target may well succeed.
    A 3xx that reached here was not followed (no Location, or no redirect status): not the
    answer the step asked for, so an upstream failure too.
    """
    if status < 300:
        return None
    return _BY_STATUS.get(status, "upstream")


_BY_STATUS = {
    400: "bad_request",
    413: "bad_request",
    422: "bad_request",
    401: "bad_key",
    403: "bad_key",
    402: "quota",
    408: "timeout",
    429: "rate_limited",
}
