"""Runtime state behind one interface: memory (the default) or Redis (a fleet)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..dsl.spec import StateSpec
from .base import RELEASED, Denied, Grant, StateBackend, StateStats
from .config import StateConfigError, redis_config
from .identity import KeyIds
from .memory import MemoryState

if TYPE_CHECKING:
    from .board import FleetBoard

__all__ = [
    "RELEASED",
    "Denied",
    "Grant",
    "KeyIds",
    "MemoryState",
    "StateBackend",
    "StateConfigError",
    "StateStats",
    "build_state",
    "fleet_board",
    "key_ids",
    "redis_config",
]


def build_state(env: Mapping[str, str], spec: StateSpec | None, local: MemoryState) -> StateBackend:
    """Redis when configured (failing open onto `local`), else `local` itself."""
    config = redis_config(env, spec)
    if config is None:
        return local
    from .redisstate import RedisState  # redis is imported only by gateways that use it

    return RedisState(config, local)


def fleet_board(backend: StateBackend) -> FleetBoard | None:
    """Where replicas share the admin overview's figures: Redis when the state lives there,
    else nowhere (one process shows its own)."""
    if backend.stats.backend != "redis":
        return None  # and redis stays unimported
    from .board import FleetBoard
    from .redisstate import RedisState

    assert isinstance(backend, RedisState)
    config = backend.config
    return FleetBoard(backend.client, config, backend.stats)


def key_ids(backend: StateBackend) -> KeyIds:
    """Provider keys' non-reversible ids: with Redis the fleet's own (an HMAC with
    PIXGATE_STATE_SECRET, the same on every replica), else this process's own. The backend's,
    so a reload that removes a key drops its id (`retain`)."""
    if isinstance(backend, MemoryState):
        return backend.key_ids
    if backend.stats.backend != "redis":
        return KeyIds(secrets.token_hex(16))
    from .redisstate import RedisState

    assert isinstance(backend, RedisState)
    return backend.names.ids
