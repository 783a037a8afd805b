"""SIGTERM: stop accepting, let the request in flight finish, give its lease back, exit 0."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import redis as sync_redis

from tests.fleet.conftest import Fleet, keys_of
from tests.fleet.test_fleet import generate
from tests.fleet.upstream import FleetUpstream
from tests.gateway import get_json
from tests.services.redis import RedisServer


def leases(server: RedisServer) -> int:
    client = sync_redis.Redis.from_url(server.url)
    try:
        return sum(int(client.zcard(name)) for name in client.scan_iter("fleet:*:lease:*"))
    finally:
        client.close()


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


async def test_sigterm_drains_in_flight_requests_and_releases_leases(
    fleet_config: Path,
    shared_redis: RedisServer,
    upstream: FleetUpstream,
    tmp_path: Path,
) -> None:
    fleet = Fleet(fleet_config, shared_redis, tmp_path)
    # A lease TTL far longer than the test: only the shutdown itself can give it back.
    replica = fleet.start("S", PIXGATE_LEASE_TTL="60", PIXGATE_SHUTDOWN_GRACE="20")
    try:
        fleet.wait_ready(replica)
        assert get_json(f"{replica.url}/health/live") == {"status": "ok"}
        assert get_json(f"{replica.url}/health/ready") == {"status": "ready", "state": "ok"}
        assert replica.admin("/admin/health")["state"]["backend"] == "redis"
        (key,) = keys_of("lease")
        upstream.set(key, delay=1.5)
        request = asyncio.create_task(generate(fleet, "S", "lease"))
        end = time.monotonic() + 30
        while upstream.in_flight[key] == 0:
            assert time.monotonic() < end, "the request never reached the upstream"
            await asyncio.sleep(0.02)
        assert leases(shared_redis) == 1
        replica.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        while not refuses(replica.port):  # stops accepting at once
            assert time.monotonic() < end, "still accepting connections after SIGTERM"
            await asyncio.sleep(0.02)
        assert await request == 200  # ...while the request in flight finishes
        assert await asyncio.to_thread(replica.proc.wait, 30) == 0
        assert leases(shared_redis) == 0  # given back, not left to expire
    finally:
        fleet.stop_all()
