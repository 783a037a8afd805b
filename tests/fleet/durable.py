"""Real `pixgate serve` processes on one real redis-server in front of the fake polling
upstream (polling_upstream.py), for the job durability tests: a Replicate-style provider
(`poller`, with a `cancel` step) and a synchronous one (`syncer`) in YAML."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.fleet.polling_upstream import KEY, PollingUpstream
from tests.gateway import REPO, free_port, serve_process
from tests.services.redis import RedisServer

CLIENT = "client-durable-key"
LEASE_TTL = "1.2"  # seconds: a dead replica's jobs are taken over within about two of them
AUTH = {"header": "Authorization", "value": "Bearer {{ key }}", "keys": "${POLLER_KEYS}"}
POLLER = {
    "id": "poller",
    "title": "durability test: Replicate-style predictions",
    "base_url": "${POLLER_BASE_URL}",
    "auth": AUTH,
    "models": {"m": {}},
    "tasks": {
        "generate": {
            "steps": [
                {
                    "name": "submit",
                    "request": {
                        "method": "POST",
                        "path": "/predictions",
                        "json": {"input": {"prompt": "{{ prompt }}"}},
                    },
                    "extract": {"id": "id"},
                },
                {
                    "name": "poll",
                    "request": {"method": "GET", "path": "/predictions/{{ steps.submit.id }}"},
                    "until": "status == 'succeeded'",
                    "fail_if": "status == 'failed' || status == 'canceled'",
                    "every": "100ms",
                    "timeout": "60s",
                    "images": "output",
                },
            ],
            "cancel": {
                "request": {"method": "POST", "path": "/predictions/{{ steps.submit.id }}/cancel"},
            },
        }
    },
}
SYNCER = {
    "id": "syncer",
    "title": "durability test: one synchronous call",
    "base_url": "${POLLER_BASE_URL}",
    "auth": AUTH,
    "models": {"m": {}},
    "tasks": {
        "generate": {
            "steps": [
                {
                    "name": "make",
                    "request": {
                        "method": "POST",
                        "path": "/sync",
                        "json": {"prompt": "{{ prompt }}"},
                    },
                    "images": "data[].b64_json",
                    "image_kind": "base64",
                }
            ]
        }
    },
}


def write_config(
    root: Path, providers: list[dict[str, Any]], routes: dict[str, Any], clients: str = ""
) -> None:
    (root / "config" / "providers.d").mkdir(parents=True)
    for spec in providers:
        path = root / "config" / "providers.d" / f"{spec['id']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (root / "config" / "routes.yaml").write_text(yaml.safe_dump(routes, sort_keys=False))
    if clients:
        (root / "config" / "clients.yaml").write_text(clients)


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {CLIENT}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())


class Cluster:
    def __init__(
        self, root: Path, redis: RedisServer, upstream: PollingUpstream, **env: str
    ) -> None:
        self.root, self.redis, self.upstream, self.env = root, redis, upstream, env
        self.gateways: list[Gateway] = []
        self.b: Gateway | None = None

    @property
    def survivor(self) -> Gateway:
        assert self.b is not None
        return self.b

    def start(self, name: str, **extra: str) -> Gateway:
        env = {
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PIXGATE_REDIS_URL": self.redis.url,
            "PIXGATE_REDIS_PREFIX": "dur",
            "PIXGATE_STATE_SECRET": "durable-state-secret-0123456789",
            "PIXGATE_REPLICA_ID": name,
            "PIXGATE_JOB_LEASE_TTL": LEASE_TTL,
            "PIXGATE_API_KEYS": CLIENT,
            "POLLER_BASE_URL": self.upstream.base_url,
            "POLLER_KEYS": KEY,
            **self.env,
            **extra,
        }
        port = free_port()
        proc = serve_process(self.root / "config", port, self.root / f"files-{name}", env=env)
        gateway = Gateway(proc, port)
        self.gateways.append(gateway)
        end = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                urllib.request.urlopen(gateway.url + "/health", timeout=2).close()
                return gateway
            except OSError:
                assert time.monotonic() < end, f"gateway {name} did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        for gateway in self.gateways:
            if gateway.proc.poll() is None:
                gateway.proc.send_signal(signal.SIGTERM)
        for gateway in self.gateways:
            try:
                gateway.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gateway.proc.kill()
                gateway.proc.wait(timeout=5)
            if gateway.proc.stderr:
                gateway.proc.stderr.close()


def submit(gateway: Gateway, model: str, prompt: str) -> str:
    """An async generation on `gateway`: the new job's id."""
    job = gateway.call(
        "POST", "/v1/images/generations?async=true", {"model": model, "prompt": prompt}
    )
    assert job["status"] in ("queued", "running"), job
    return str(job["id"])
