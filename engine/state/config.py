"""Which state backend: PIXGATE_REDIS_URL (or routes.yaml `state: {redis: ...}`), else memory."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from ..dsl.spec import StateSpec

DEFAULT_PREFIX = "pixgate"
DEFAULT_TIMEOUT = 0.25  # one Redis call; past it the request goes on with local state
DEFAULT_LEASE_TTL = 30.0
DEFAULT_CACHE_TTL = 1.0  # the most a replica's cached key health and breakers may lag


class StateConfigError(ValueError):
    """Redis is asked for but cannot be used as configured (said once, at start)."""


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str
    secret: str
    prefix: str = DEFAULT_PREFIX
    timeout: float = DEFAULT_TIMEOUT
    lease_ttl: float = DEFAULT_LEASE_TTL
    replica: str = ""
    cache_ttl: float = DEFAULT_CACHE_TTL


def redis_config(env: Mapping[str, str], spec: StateSpec | None) -> RedisConfig | None:
    """The environment wins over the config file; None means state stays in memory."""
    url = (env.get("PIXGATE_REDIS_URL") or "").strip() or (spec.redis_url if spec else None)
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise StateConfigError("PIXGATE_REDIS_URL must start with redis://, rediss:// or unix://")
    secret = (env.get("PIXGATE_STATE_SECRET") or "").strip()
    if len(secret) < 16:
        raise StateConfigError(
            "PIXGATE_STATE_SECRET (16 characters or more, the same on every replica) is required "
            "with Redis: provider keys are named in Redis by an HMAC with it, never in clear"
        )
    prefix = (env.get("PIXGATE_REDIS_PREFIX") or "").strip() or (spec.prefix if spec else None)
    timeout = spec.timeout if spec and spec.timeout else DEFAULT_TIMEOUT
    lease_ttl = spec.lease_ttl if spec and spec.lease_ttl else DEFAULT_LEASE_TTL
    if env.get("PIXGATE_REDIS_TIMEOUT"):
        timeout = float(env["PIXGATE_REDIS_TIMEOUT"])
    if env.get("PIXGATE_LEASE_TTL"):
        lease_ttl = float(env["PIXGATE_LEASE_TTL"])
    replica = (env.get("PIXGATE_REPLICA_ID") or "").strip() or (
        f"{socket.gethostname()}:{os.getpid()}"
    )
    cache_ttl = DEFAULT_CACHE_TTL
    if env.get("PIXGATE_STATE_CACHE_TTL"):
        cache_ttl = float(env["PIXGATE_STATE_CACHE_TTL"])
        if not 0 <= cache_ttl <= 1:
            raise StateConfigError("PIXGATE_STATE_CACHE_TTL must be between 0 (off) and 1 s")
    return RedisConfig(
        url, secret, prefix or DEFAULT_PREFIX, timeout, lease_ttl, replica, cache_ttl
    )
