"""A job outlives the replica running it: two real `pixgate serve` processes on one real
redis-server and a fake Replicate-style polling upstream that counts submits and polls.

`kill -9` of replica A mid-poll: B takes the job over when A's lease lapses and polls on from
A's checkpoint, so the upstream sees one submit. Jobs on a synchronous provider are sent again
once (`resubmit_on_loss: true`) or fail with `job_lost` (false). A DELETE on B stops A's
polling and calls the upstream's cancel endpoint (the provider's `cancel` step).
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import redis

from tests.fleet.durable import POLLER, SYNCER, Cluster, submit, write_config
from tests.fleet.polling_upstream import KEY, PollingUpstream
from tests.services.redis import redis_server

ROUTES = {
    "demo": False,
    "routes": {
        "poll": {"targets": [{"provider": "poller", "model": "m"}]},
        "sync-again": {"targets": [{"provider": "syncer", "model": "m"}], "resubmit_on_loss": True},
        "sync-once": {"targets": [{"provider": "syncer", "model": "m"}]},
    },
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("durable")
    write_config(root, [POLLER, SYNCER], ROUTES)
    upstream = PollingUpstream()
    upstream.start()
    try:
        with redis_server(root) as server:
            cluster = Cluster(root, server, upstream)
            try:
                cluster.b = cluster.start("B")  # the survivor, shared by the tests
                yield cluster
            finally:
                cluster.stop()
    finally:
        upstream.stop()


def test_kill_9_mid_poll_resumes_on_b_without_a_second_submit(cluster: Cluster) -> None:
    up = cluster.upstream
    a, b = cluster.start("A"), cluster.survivor
    polled = submit(a, "poll", "poll me")
    again = submit(a, "sync-again", "sync again")
    once = submit(a, "sync-once", "sync once")
    up.wait_for(lambda: up.count(up.polls, "poll me") >= 2, 30, "A never polled")
    up.wait_for(lambda: up.count(up.syncs, "sync again") == 1, 30, "A never called /sync")
    up.wait_for(lambda: up.count(up.syncs, "sync once") == 1, 30, "A never called /sync")

    store = redis.Redis.from_url(cluster.redis.url)
    raw = store.get(f"dur:job:{polled}")
    assert raw is not None and KEY.encode() not in raw  # the checkpoint names keys by id
    checkpoint = json.loads(raw)["checkpoint"]
    assert len(checkpoint["attempt"]["key_id"]) == 32  # an HMAC of the key, never the key
    assert checkpoint["calls"]["0"]["step"] == 1  # polling, with the submit's values
    assert checkpoint["calls"]["0"]["steps"]["submit"]["id"]

    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(timeout=10)
    polls_at_kill = up.count(up.polls, "poll me")
    # B takes over once A's lease lapses: polling on, and /sync once more for sync-again.
    up.wait_for(lambda: up.count(up.polls, "poll me") > polls_at_kill, 30, "B never polled")
    up.wait_for(lambda: up.count(up.syncs, "sync again") == 2, 30, "B did not resubmit")
    for prompt in ("poll me", "sync again", "sync once"):
        up.release(prompt)

    done = b.call("GET", f"/v1/images/jobs/{polled}?wait=20s")
    assert done["status"] == "succeeded", done
    assert done["result"]["data"][0]["url"]
    assert up.count(up.submits, "poll me") == 1  # resumed from the checkpoint
    assert "checkpoint" not in done and "request" not in done

    resubmitted = b.call("GET", f"/v1/images/jobs/{again}?wait=20s")
    assert resubmitted["status"] == "succeeded", resubmitted
    assert up.count(up.syncs, "sync again") == 2

    lost = b.call("GET", f"/v1/images/jobs/{once}?wait=20s")
    assert lost["status"] == "failed", lost
    assert lost["error"]["code"] == "job_lost"
    assert "resubmit_on_loss" in lost["error"]["message"]
    assert up.count(up.syncs, "sync once") == 1  # never paid for twice
    assert store.scard("dur:jobsactive") == 0  # nothing left queued or running


def test_delete_on_b_stops_polling_on_a_and_cancels_upstream(cluster: Cluster) -> None:
    up = cluster.upstream
    a, b = cluster.start("A2"), cluster.survivor
    job = submit(a, "poll", "cancel me")
    up.wait_for(lambda: up.count(up.polls, "cancel me") >= 2, 30, "A never polled")

    cancelled = b.call("DELETE", f"/v1/images/jobs/{job}")
    assert cancelled["status"] == "cancelled", cancelled
    up.wait_for(lambda: up.count(up.cancels, "cancel me") == 1, 10, "no upstream cancel")
    stopped = up.count(up.polls, "cancel me")
    time.sleep(1.0)  # ten poll intervals: a running poll loop would have polled again
    assert up.count(up.polls, "cancel me") == stopped
    assert a.call("GET", f"/v1/images/jobs/{job}")["status"] == "cancelled"
    assert up.count(up.submits, "cancel me") == 1
    with pytest.raises(urllib.error.HTTPError):  # and another client's key still gets 404
        urllib.request.urlopen(b.url + f"/v1/images/jobs/{job}", timeout=10)


def test_sigterm_hands_running_jobs_over_at_once(cluster: Cluster) -> None:
    up = cluster.upstream
    a, b = cluster.start("A3"), cluster.survivor
    job = submit(a, "poll", "hand me over")
    up.wait_for(lambda: up.count(up.polls, "hand me over") >= 2, 30, "A never polled")
    a.proc.send_signal(signal.SIGTERM)
    a.proc.wait(timeout=30)
    polls_at_stop = up.count(up.polls, "hand me over")
    up.wait_for(lambda: up.count(up.polls, "hand me over") > polls_at_stop, 30, "B never polled")
    up.release("hand me over")
    done = b.call("GET", f"/v1/images/jobs/{job}?wait=20s")
    assert done["status"] == "succeeded", done
    assert up.count(up.submits, "hand me over") == 1
    assert up.count(up.cancels, "hand me over") == 0  # a hand-over is not a cancel
