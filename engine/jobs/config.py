"""Job settings from the environment (docs/jobs.md lists them)."""

from __future__ import annotations

import base64
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class JobConfig:
    ttl: float = DAY  # a job record (and its result) expires this long after its last change
    per_owner: int = 16  # queued + running jobs one client may have (429 beyond)
    total: int = 256  # queued + running jobs in this gateway process
    max_wait: float = 60.0  # the longest ?wait= long-poll
    idempotency_ttl: float = DAY
    webhook_secret: bytes | None = None  # the raw key of a `whsec_<base64>` secret
    webhook_allow_http: bool = False  # plain http callback URLs (tests, private networks)
    webhook_retry_for: float = DAY  # give up delivering after this long
    webhook_first_backoff: float = 5.0  # doubled after every failed attempt
    lease_ttl: float = 30.0  # a running job's lease; another replica takes over once it lapses
    holder: str = ""  # this process in job leases: the replica id plus a per-start token

    @property
    def renew_every(self) -> float:
        return max(0.05, self.lease_ttl / 3)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobConfig:
        def num(name: str, default: float) -> float:
            raw = (env.get(name) or "").strip()
            return float(raw) if raw else default

        return cls(
            ttl=num("PIXGATE_JOB_TTL", DAY),
            per_owner=int(num("PIXGATE_JOBS_PER_CLIENT", 16)),
            total=int(num("PIXGATE_JOBS_TOTAL", 256)),
            max_wait=num("PIXGATE_JOB_MAX_WAIT", 60.0),
            idempotency_ttl=num("PIXGATE_IDEMPOTENCY_TTL", DAY),
            webhook_secret=webhook_secret(env.get("PIXGATE_WEBHOOK_SECRET")),
            webhook_allow_http=(env.get("PIXGATE_WEBHOOK_ALLOW_HTTP") or "") in ("1", "true"),
            webhook_retry_for=num("PIXGATE_WEBHOOK_RETRY_FOR", DAY),
            webhook_first_backoff=num("PIXGATE_WEBHOOK_BACKOFF", 5.0),
            lease_ttl=num("PIXGATE_JOB_LEASE_TTL", 30.0),
            holder=holder_id(env),
        )


def holder_id(env: Mapping[str, str]) -> str:
    """Unique per process start: a restarted replica does not hold its old run's leases."""
    replica = (env.get("PIXGATE_REPLICA_ID") or "").strip()
    return f"{replica or socket.gethostname() + ':' + str(os.getpid())}:{secrets.token_hex(4)}"


def webhook_secret(raw: str | None) -> bytes | None:
    """Standard Webhooks secrets are `whsec_` + base64 of the key."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise ValueError("PIXGATE_WEBHOOK_SECRET must be whsec_<base64>") from None
