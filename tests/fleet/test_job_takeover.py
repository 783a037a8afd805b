"""What a replica that takes over a job after `kill -9` of its owner owes the fleet: two real
`pixgate serve` processes, one real redis-server, the fake Replicate-style upstream.

The taking-over replica settles the job's usage and budget (once), holds a key lease for it
like any attempt, resumes with the same key wherever that key sits in its list, and a cancel
of a job whose owner died still sends the provider's cancel step.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from engine.clients.spec import digest
from tests.fleet.durable import CLIENT, POLLER, Cluster, Gateway, write_config
from tests.fleet.polling_upstream import PollingUpstream
from tests.services.redis import redis_server

ADMIN = "takeover-admin-key-0123456789"
PRICE = 0.25
ROUTES = {
    "demo": False,
    "routes": {
        "paid": {
            "targets": [{"provider": "poller", "model": "m"}],
            "pricing": {"per_image": PRICE},
        },
    },
}
CLIENTS = f"""clients:
  - name: durable
    keys: ["sha256:{digest(CLIENT)}"]
    budget: {{usd_per_day: 100}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("takeover")
    write_config(root, [POLLER], ROUTES, CLIENTS)
    upstream = PollingUpstream()
    upstream.start()
    try:
        with redis_server(root) as server:
            cluster = Cluster(root, server, upstream, PIXGATE_ADMIN_KEY=ADMIN, PIXGATE_API_KEYS="")
            try:
                cluster.b = cluster.start("B")
                yield cluster
            finally:
                cluster.stop()
    finally:
        upstream.stop()


def submit(gateway: Gateway, model: str, prompt: str) -> str:
    job = gateway.call(
        "POST", "/v1/images/generations?async=true", {"model": model, "prompt": prompt}
    )
    return str(job["id"])


def kill(gateway: Gateway) -> None:
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(timeout=10)


def admin_usage(gateway: Gateway, requests: int) -> dict[str, Any]:
    """/admin/usage once `requests` are counted (counts reach Redis just after a job ends)."""
    end = time.monotonic() + 10
    while True:
        req = urllib.request.Request(
            gateway.url + "/admin/usage?group_by=client",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            report: dict[str, Any] = json.loads(resp.read())
        if report["totals"]["requests"] >= requests or time.monotonic() > end:
            return report
        time.sleep(0.05)


def test_the_replica_that_finishes_a_job_settles_usage_and_budget(cluster: Cluster) -> None:
    up = cluster.upstream
    a, b = cluster.start("A"), cluster.survivor
    made = submit(a, "paid", "paid and made")
    failed = submit(a, "paid", "paid and failed")
    for prompt in ("paid and made", "paid and failed"):
        up.wait_for(lambda p=prompt: up.count(up.polls, p) >= 2, 30, "A never polled")
    kill(a)
    polls = up.count(up.polls, "paid and made")
    up.wait_for(lambda: up.count(up.polls, "paid and made") > polls, 30, "B never polled")
    up.release("paid and made")
    up.fail("paid and failed")
    assert b.call("GET", f"/v1/images/jobs/{made}?wait=20s")["status"] == "succeeded"
    assert b.call("GET", f"/v1/images/jobs/{failed}?wait=20s")["status"] == "failed"

    report = admin_usage(b, 2)
    row = report["data"][0]
    assert (row["client"], row["requests"], row["images"], row["failures"]) == (
        "durable", 2, 1, 1
    )  # fmt: skip
    assert row["cost_usd"] == PRICE
    # Each job reserved its estimate on A; B settled them: the image made, the failure freed.
    assert report["budgets"]["durable"]["spent_today_usd"] == PRICE
