"""Pool keys' ids (a job checkpoint names its key by one): a reload that removes a key drops
what was kept for it, with memory state and with Redis state alike."""

from __future__ import annotations

from engine.state import KeyIds, MemoryState, StateBackend, key_ids
from tests.state.conftest import Replica, provider


def _held(ids: KeyIds) -> set[tuple[str, str]]:
    return set(ids._cache)


def _reload_drops_removed_keys(state: StateBackend) -> None:
    ids = key_ids(state)
    before = ids("p", "sk-kept")
    ids("p", "sk-removed")
    ids("gone", "sk-other")
    state.retain({"p": provider("sk-kept", "sk-new")})
    assert _held(ids) == {("p", "sk-kept")}  # a removed key (or provider) is not kept
    assert key_ids(state) is ids  # the one the service names keys with
    assert ids("p", "sk-kept") == before  # a kept key keeps its id


def test_memory_state_drops_the_ids_of_removed_keys_on_reload() -> None:
    _reload_drops_removed_keys(MemoryState())


def test_redis_state_drops_the_ids_of_removed_keys_on_reload(replicas: Replica) -> None:
    _reload_drops_removed_keys(replicas("a"))
