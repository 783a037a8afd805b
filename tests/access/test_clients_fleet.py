"""Client limits hold across a fleet: three real `pixgate serve` processes count in one
real redis-server (`rpm: 60`, 300 requests spread over them: 60 admitted)."""

from __future__ import annotations

import os
import shutil
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.clients.spec import digest
from tests.gateway import REPO, free_port, serve_process, wait_healthy
from tests.services.redis import redis_server

KEY = "pg-fleet-client-0123456789abcdef"
RPM = 60
REQUESTS = 300


def post(url: str) -> int:
    body = b'{"model": "demo", "prompt": "x", "size": "64x64", "response_format": "b64_json"}'
    req = urllib.request.Request(
        url,
        data=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_rpm_holds_across_three_replicas(tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    shutil.copy(REPO / "routes.yaml", root / "routes.yaml")
    shutil.copytree(REPO / "providers.d", root / "providers.d")
    (root / "clients.yaml").write_text(
        f'clients:\n  - name: fleet\n    keys: ["sha256:{digest(KEY)}"]\n'
        f"    limits: {{rpm: {RPM}}}\n"
    )
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as redis:
        env = {
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PIXGATE_REDIS_URL": redis.url,
            "PIXGATE_STATE_SECRET": "clients-fleet-secret-0123456789",
            "PIXGATE_REDIS_PREFIX": "clients-fleet",
        }
        ports = [free_port() for _ in range(3)]
        procs = [serve_process(root, p, tmp_path / f"files{p}", env=env) for p in ports]
        try:
            for port in ports:
                wait_healthy(port, deadline=60)
            urls = [f"http://127.0.0.1:{ports[i % 3]}/v1/images/generations"
                    for i in range(REQUESTS)]  # fmt: skip
            with ThreadPoolExecutor(12) as pool:
                statuses = list(pool.map(post, urls))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=20)
    admitted = statuses.count(200)
    assert statuses.count(429) + admitted == REQUESTS, set(statuses)
    # Without shared counting each replica would admit 60 (180 in all).
    assert RPM - 2 <= admitted <= RPM + 2, admitted
