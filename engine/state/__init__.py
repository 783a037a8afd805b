"""Runtime state behind one interface: memory (the default) or Redis (a fleet)."""

from __future__ import annotations

from collections.abc import Mapping

from ..dsl.spec import StateSpec
from .base import RELEASED, Denied, Grant, StateBackend, StateStats
from .config import StateConfigError, redis_config
from .memory import MemoryState

__all__ = [
    "RELEASED",
    "Denied",
    "Grant",
    "MemoryState",
    "StateBackend",
    "StateConfigError",
    "StateStats",
    "build_state",
    "redis_config",
]


def build_state(env: Mapping[str, str], spec: StateSpec | None, local: MemoryState) -> StateBackend:
    """Redis when configured (failing open onto `local`), else `local` itself."""
    config = redis_config(env, spec)
    if config is None:
        return local
    from .redisstate import RedisState  # redis is imported only by gateways that use it

    return RedisState(config, local)
