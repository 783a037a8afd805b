"""Three real `pixgate serve` processes sharing one redis-server and one fake upstream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet.upstream import FleetUpstream
from tests.gateway import REPO, free_port, get_json, serve_process
from tests.services.redis import RedisServer, redis_server

ADMIN = "fleet-admin-key"
SECRET = "fleet-state-secret-0123456789"
LEASE_TTL = 1.0
NAMES = ("A", "B", "C", "D")  # D is the one the kill -9 test kills
# One provider per scenario, so what one test does to keys and breakers stays its own.
POLICIES: dict[str, dict[str, Any]] = {
    "badkey": {},
    "ratelimit": {},
    "conc": {"max_concurrency_per_key": 2},
    "breaker": {"circuit_breaker": {"failures": 2, "cooldown": "1s"}},
    "lease": {"max_concurrency_per_key": 1},
    "outage": {"max_concurrency_per_key": 3},
}
KEYS_PER_PROVIDER = {"conc": 2, "lease": 1, "breaker": 1}


def keys_of(pid: str) -> list[str]:
    return [f"sk-{pid}-{i}-0123456789abcdef" for i in range(KEYS_PER_PROVIDER.get(pid, 2))]


def write_config(root: Path, upstream: FleetUpstream) -> Path:
    (root / "providers.d").mkdir(parents=True)
    template = (REPO / "providers.d" / "openai.yaml").read_text()
    routes: dict[str, Any] = {"demo": False, "routes": {}, "providers": {}}
    for pid, policy in POLICIES.items():
        text = template.replace("id: openai", f"id: {pid}")
        text = text.replace("${OPENAI_BASE_URL:-https://api.openai.com/v1}", upstream.base_url(pid))
        text = text.replace("${OPENAI_API_KEYS:-}", ",".join(keys_of(pid)))
        (root / "providers.d" / f"{pid}.yaml").write_text(text)
        routes["routes"][pid] = {"targets": [{"provider": pid, "model": "dall-e-2"}]}
        routes["providers"][pid] = policy
    (root / "routes.yaml").write_text(yaml.safe_dump(routes))
    return root


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self, path: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        request = urllib.request.Request(f"{self.url}{path}", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def admin_keys(self, provider: str) -> dict[str, Any]:
        """This replica's /admin/keys for one provider, plus the state backend's status."""
        body = self.admin("/admin/keys")
        return {"state": body["state"], **body["providers"][provider]}


class Fleet:
    def __init__(self, config: Path, redis: RedisServer, files: Path) -> None:
        self.config, self.redis, self.files = config, redis, files
        self.replicas: dict[str, Replica] = {}

    def env(self, name: str) -> dict[str, str]:
        return {
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PIXGATE_REDIS_URL": self.redis.url,
            "PIXGATE_STATE_SECRET": SECRET,
            "PIXGATE_REDIS_PREFIX": "fleet",
            "PIXGATE_REPLICA_ID": name,
            "PIXGATE_LEASE_TTL": str(LEASE_TTL),
            "PIXGATE_ADMIN_KEY": ADMIN,
        }

    def start(self, name: str, **env: str) -> Replica:
        port = free_port()
        proc = serve_process(self.config, port, self.files / name, env={**self.env(name), **env})
        replica = self.replicas[name] = Replica(name, port, proc)
        return replica

    def wait_ready(self, replica: Replica, deadline: float = 90) -> None:
        end = time.monotonic() + deadline
        while True:
            if replica.proc.poll() is not None:
                err = replica.proc.stderr.read().decode() if replica.proc.stderr else ""
                raise AssertionError(f"replica {replica.name} exited: {err[-2000:]}")
            try:
                get_json(f"{replica.url}/health", timeout=2)
                return
            except OSError:
                assert time.monotonic() < end, f"replica {replica.name} not ready"
                time.sleep(0.05)

    def stop_all(self) -> None:
        for replica in self.replicas.values():
            if replica.proc.poll() is None:
                replica.proc.send_signal(signal.SIGTERM)
        for replica in self.replicas.values():
            try:
                replica.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                replica.proc.kill()
                replica.proc.wait(timeout=5)
            if replica.proc.stderr:
                replica.proc.stderr.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FleetUpstream]:
    server = FleetUpstream()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def fleet_config(tmp_path_factory: pytest.TempPathFactory, upstream: FleetUpstream) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "config", upstream)


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, fleet_config: Path, shared_redis: RedisServer
) -> Iterator[Fleet]:
    fleet = Fleet(fleet_config, shared_redis, tmp_path_factory.mktemp("files"))
    try:
        for name in NAMES:
            fleet.start(name)
        for replica in fleet.replicas.values():
            fleet.wait_ready(replica)
        yield fleet
    finally:
        fleet.stop_all()
