from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from engine.dsl.expressions import Expr
from engine.dsl.spec import AuthSpec, BreakerPolicy, ErrorRule, ProviderPolicy, ProviderSpec
from engine.state.config import RedisConfig
from engine.state.redisstate import RedisState
from tests.services.redis import RedisServer, redis_server

SECRET = "test-deployment-secret-0123456789"


def provider(*keys: str, pid: str = "p") -> ProviderSpec:
    return ProviderSpec(
        id=pid,
        title=pid,
        base_url="http://x",
        auth=AuthSpec(keys=keys),
        models={},
        tasks={},
        errors=(ErrorRule(Expr("a"), "upstream"),),
        error_message=Expr("message"),
    )


POLICY = ProviderPolicy(
    quota_reset=600,
    bad_key_reprobe=3600,
    max_cooldown=60,
    breaker=BreakerPolicy(failures=2, cooldown=1.0),
)

Replica = Callable[..., RedisState]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
async def replicas(redis: RedisServer) -> AsyncIterator[Replica]:
    """Make replicas (RedisState objects) sharing the test's Redis; all closed at the end."""
    made: list[RedisState] = []

    def make(name: str = "a", **overrides: object) -> RedisState:
        fields: dict[str, object] = {
            "url": redis.url,
            "secret": SECRET,
            "prefix": "t",
            "timeout": 0.5,
            "lease_ttl": 5.0,
            "replica": name,
        }
        fields.update(overrides)
        state = RedisState(RedisConfig(**fields))  # type: ignore[arg-type]
        made.append(state)
        return state

    yield make
    for state in made:
        await state.close()
