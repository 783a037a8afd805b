"""Pool keys' ids (a job checkpoint names its key by one): a reload that removes a key drops
what was kept for it, with memory state and with Redis state alike; the Redis names kept per
set of candidate keys stay bounded."""

from __future__ import annotations

from engine.state import KeyIds, MemoryState, StateBackend, key_ids
from engine.state.identity import ATTEMPTS_KEPT, Names
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


def test_the_acquire_names_kept_stay_bounded_however_many_retry_patterns() -> None:
    names = Names("t", KeyIds("secret"))
    pool = tuple(f"sk-{i}" for i in range(12))
    # a retry's candidates leave out the keys it tried: up to 2^12 sets of one provider
    patterns = [
        tuple(k for bit, k in enumerate(pool) if not mask >> bit & 1) for mask in range(4096)
    ]
    for keys in patterns:
        names.attempt("p", keys)
    assert len(names._attempts) <= ATTEMPTS_KEPT
    first = names.attempt("p", patterns[0])  # long gone from the cache: made again, the same
    assert first[:3] == ("t:{p}:breaker", "t:{p}:probe", "t:{p}:cursor")
    assert first[3::2] == tuple(names.key("p", k)[0] for k in pool)
    assert len(first) == 3 + 2 * len(pool)
