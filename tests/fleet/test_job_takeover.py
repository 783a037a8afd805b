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
from tests.fleet.durable import (
    AUTH,
    CLIENT,
    POLLER,
    Cluster,
    Gateway,
    submit,
    write_config,
)
from tests.fleet.polling_upstream import OTHER_KEYS, PollingUpstream
from tests.services.redis import redis_server

ADMIN = "takeover-admin-key-0123456789"
PRICE = 0.25
FIRST, SECOND = OTHER_KEYS
LIMITER = {**POLLER, "id": "limiter"}
KEYED = {**POLLER, "id": "keyed", "auth": {**AUTH, "keys": "${KEYED_KEYS}"}}
PAID = {"targets": [{"provider": "poller", "model": "m"}], "pricing": {"per_image": PRICE}}
ROUTES = {
    "demo": False,
    "routes": {
        "paid": PAID,
        "poll": {"targets": [{"provider": "poller", "model": "m"}]},
        "limited": {"targets": [{"provider": "limiter", "model": "m"}]},
        "keyed": {"targets": [{"provider": "keyed", "model": "m"}]},
    },
    "providers": {"limiter": {"max_concurrency_per_key": 1}},
}
CLIENTS = f"""clients:
  - name: durable
    keys: ["sha256:{digest(CLIENT)}"]
    budget: {{usd_per_day: 100}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("takeover")
    write_config(root, [POLLER, LIMITER, KEYED], ROUTES, CLIENTS)
    upstream = PollingUpstream()
    upstream.start()
    try:
        with redis_server(root) as server:
            env = {"PIXGATE_ADMIN_KEY": ADMIN, "PIXGATE_API_KEYS": "", "PIXGATE_LEASE_TTL": "1"}
            # B lists the keyed provider's keys the other way round from A
            cluster = Cluster(root, server, upstream, KEYED_KEYS=f"{SECOND},{FIRST}", **env)
            try:
                cluster.b = cluster.start("B")
                yield cluster
            finally:
                cluster.stop()
    finally:
        upstream.stop()


def kill(gateway: Gateway) -> None:
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(timeout=10)


def polled(up: PollingUpstream, prompt: str, times: int = 2) -> None:
    up.wait_for(lambda: up.count(up.polls, prompt) >= times, 30, f"{prompt!r} never polled")


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
    polled(up, "paid and made")
    polled(up, "paid and failed")
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

    # A graceful hand-over (SIGTERM) is not the end of the job either: B settles it.
    c = cluster.start("C")
    handed = submit(c, "paid", "paid and handed over")
    polled(up, "paid and handed over")
    c.proc.send_signal(signal.SIGTERM)
    c.proc.wait(timeout=30)
    up.release("paid and handed over")
    assert b.call("GET", f"/v1/images/jobs/{handed}?wait=20s")["status"] == "succeeded"
    report = admin_usage(b, 3)
    row = report["data"][0]
    assert (row["requests"], row["images"], row["failures"]) == (3, 2, 1)
    assert report["budgets"]["durable"]["spent_today_usd"] == 2 * PRICE


def test_a_resumed_job_holds_a_lease_on_its_key(cluster: Cluster) -> None:
    up = cluster.upstream
    a, b = cluster.start("A2"), cluster.survivor
    first = submit(a, "limited", "limited first")
    up.wait_for(lambda: up.count(up.polls, "limited first") >= 2, 30, "A never polled")
    kill(a)
    polls = up.count(up.polls, "limited first")
    up.wait_for(lambda: up.count(up.polls, "limited first") > polls, 30, "B never polled")
    second = submit(b, "limited", "limited second")
    time.sleep(1.5)  # fifteen poll intervals, and A's own key lease (1 s) has lapsed
    assert up.count(up.submits, "limited second") == 0  # max_concurrency_per_key: 1
    up.release("limited first")
    up.wait_for(lambda: up.count(up.submits, "limited second") == 1, 30, "never sent")
    up.release("limited second")
    for job in (first, second):
        assert b.call("GET", f"/v1/images/jobs/{job}?wait=20s")["status"] == "succeeded"


def test_a_resume_uses_the_same_key_wherever_the_list_now_has_it(cluster: Cluster) -> None:
    up = cluster.upstream
    a, b = cluster.start("A3", KEYED_KEYS=f"{FIRST},{SECOND}"), cluster.survivor
    jobs = [submit(a, "keyed", f"keyed {i}") for i in range(2)]  # both keys, most likely
    polled(up, "keyed 0")
    polled(up, "keyed 1")
    kill(a)
    for i, job in enumerate(jobs):
        up.release(f"keyed {i}")  # B's first poll finds it done, if it asks with the right key
        done = b.call("GET", f"/v1/images/jobs/{job}?wait=20s")
        assert done["status"] == "succeeded", done
        assert up.count(up.submits, f"keyed {i}") == 1


def test_a_cancel_after_the_owner_died_sends_the_upstream_cancel(cluster: Cluster) -> None:
    up = cluster.upstream
    a, b = cluster.start("A4"), cluster.survivor
    job = submit(a, "poll", "cancel when dead")
    polled(up, "cancel when dead")
    kill(a)
    b.call("DELETE", f"/v1/images/jobs/{job}")  # at once: A's lease may not have lapsed yet
    end = time.monotonic() + 30
    while b.call("GET", f"/v1/images/jobs/{job}")["status"] != "cancelled":
        assert time.monotonic() < end, "the job was never cancelled"
        time.sleep(0.1)
    up.wait_for(lambda: up.count(up.cancels, "cancel when dead") == 1, 10, "no upstream cancel")
    assert up.count(up.submits, "cancel when dead") == 1
