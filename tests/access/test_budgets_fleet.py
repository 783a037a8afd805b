"""A budget holds across a fleet: two real `pixgate serve` processes reserve and settle in one
real redis-server, so twelve concurrent $0.25 requests against $1.00 spread over both admit
exactly four, and either replica's /admin/usage reports the fleet's totals."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.access.test_budgets import ADMIN, KEY, config
from tests.gateway import REPO, free_port, get_json, serve_process, wait_healthy
from tests.services.redis import redis_server

REQUESTS = 12


def post(url: str) -> tuple[int, str]:
    body = b'{"model": "demo", "prompt": "x", "size": "64x64", "response_format": "b64_json"}'
    req = urllib.request.Request(
        url,
        data=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status), resp.headers.get("x-pixgate-cost-usd", "")
    except urllib.error.HTTPError as err:
        return int(err.code), json.loads(err.read())["error"]["code"]


def fleet_usage(port: int, deadline: float = 10.0) -> dict[str, Any]:
    """A replica's /admin/usage once the other replica's counts have reached Redis (each
    sends its counts just after answering, without the request waiting for it)."""
    end = time.monotonic() + deadline
    while True:
        report = get_json(f"http://127.0.0.1:{port}/admin/usage?group_by=client", token=ADMIN)
        if report["totals"]["requests"] >= 4 or time.monotonic() > end:
            return dict(report)
        time.sleep(0.05)


def test_spend_is_shared_by_two_replicas_through_redis(tmp_path: Path) -> None:
    root = config(tmp_path, per_day=1.0, per_month=10.0)
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as redis:
        env = {
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PIXGATE_REDIS_URL": redis.url,
            "PIXGATE_STATE_SECRET": "budgets-fleet-secret-0123456789",
            "PIXGATE_REDIS_PREFIX": "budgets-fleet",
            "PIXGATE_ADMIN_KEY": ADMIN,
        }
        ports = [free_port() for _ in range(2)]
        procs = [serve_process(root, p, tmp_path / f"files{p}", env=env) for p in ports]
        try:
            for port in ports:
                wait_healthy(port, deadline=60)
            urls = [f"http://127.0.0.1:{ports[i % 2]}/v1/images/generations"
                    for i in range(REQUESTS)]  # fmt: skip
            with ThreadPoolExecutor(REQUESTS) as pool:
                answers = list(pool.map(post, urls))
            usage = [fleet_usage(p) for p in ports]
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=20)
    assert sorted(answers) == [(200, "0.25")] * 4 + [(429, "insufficient_quota")] * 8
    for report in usage:  # the same fleet-wide numbers from either replica
        assert report["data"] == [
            {"client": "paying", "requests": 4, "images": 4, "failures": 0, "cost_usd": 1.0,
             "upstream_seconds": report["data"][0]["upstream_seconds"]}
        ]  # fmt: skip
        assert report["budgets"]["paying"]["spent_today_usd"] == 1.0
