"""The /admin/keys view of RedisState (a part of it): the fleet's key health read from Redis,
and an operator's reprobe written there; this replica's own view while Redis is unreachable.
"""

from __future__ import annotations

import time
from typing import Any

from ..dsl.spec import ProviderSpec
from . import adminrows
from .config import RedisConfig
from .healthcache import HealthCache
from .outbox import Outbox
from .redispart import RedisPart


class RedisKeyReport(RedisPart):
    # set by RedisState
    config: RedisConfig
    cache: HealthCache
    outbox: Outbox

    async def report(self, providers: dict[str, ProviderSpec]) -> dict[str, dict[str, Any]]:
        """Fleet-wide state from Redis (this replica's own when Redis is unreachable)."""
        if self.stats.degraded:
            return self._local_report(providers)
        await self.outbox.flush()  # this replica's batched counts and releases first
        answers = await self.guard(adminrows.ask(self.client, self.names, providers).execute())
        if answers is None:
            return self._local_report(providers)
        return adminrows.read(answers, providers)

    async def reprobe(self, provider: str, key: str) -> None:
        await self.local.reprobe(provider, key)
        health, _ = self.names.key(provider, key)
        now_ms = str(int(time.time() * 1000))
        # In the past but not 0: the key still counts as resting, so its next success
        # clears its last verdict (the settle script's rule).
        fields: dict[str | bytes, str | bytes] = {
            "until": "1", "changed_by": self.config.replica, "changed_at": now_ms,
        }  # fmt: skip
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(health, mapping=fields)  # type: ignore[arg-type]
        pipe.publish(self.names.channel, provider)
        await self.guard(pipe.execute())
        self.cache.drop(provider)

    def _local_report(self, providers: dict[str, ProviderSpec]) -> dict[str, dict[str, Any]]:
        report = self.local.report_now(providers)
        for entry in report.values():
            entry["source"] = "local (Redis unreachable)"
        return report
