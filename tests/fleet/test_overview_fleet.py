"""The admin overview of a fleet: three real `pixgate serve` processes (A, B, C) share one
real redis-server; traffic sent to each shows in the overview of any of them, in its JSON
endpoint and in a real browser. With Redis gone the overview still answers, with this
replica's own figures and a notice, and the fleet's figures come back with Redis.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fleet.conftest import ADMIN, Fleet, Replica
from tests.services.chromium import browser
from tests.services.redis import RedisServer

__all__ = ["browser"]
NAMES = ("A", "B", "C")
SENT = {"A": 3, "B": 2, "C": 1}  # successful image requests per replica
ROUTE = "badkey"  # a provider of the fleet config whose keys all answer 200 in this module
Overview = dict[str, Any]


@pytest.fixture(scope="module")
def trio(
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


def generate(replica: Replica, model: str) -> int:
    """One image request through the official SDK; the HTTP status the client saw."""
    with openai.OpenAI(
        base_url=f"{replica.url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as sdk:
        try:
            sdk.images.generate(model=model, prompt="a fleet", response_format="b64_json")
        except openai.APIStatusError as exc:
            return exc.status_code
    return 200


def total(overview: Overview) -> int:
    return sum(int(row["requests"]) for row in overview["last_5m"])


def wait_for(replica: Replica, check: Callable[[Overview], bool], deadline: float = 30) -> Overview:
    """The replica's overview once `check` holds (the replicas share every 2 s)."""
    end = time.monotonic() + deadline
    while True:
        overview = replica.admin("/admin/api/overview")
        if check(overview):
            return overview
        assert time.monotonic() < end, f"overview of {replica.name} never got there: {overview}"
        time.sleep(0.2)


def test_the_overview_of_any_replica_shows_the_whole_fleet(trio: Fleet) -> None:
    for name, count in SENT.items():
        for _ in range(count):
            assert generate(trio.replicas[name], ROUTE) == 200
    assert generate(trio.replicas["B"], "no-such-model") == 404  # an error, on B
    expected = sum(SENT.values()) + 1
    for name in NAMES:
        overview = wait_for(trio.replicas[name], lambda o: total(o) == expected)
        assert overview["scope"] == "fleet" and overview["notice"] is None
        replicas = {r["replica"]: r for r in overview["replicas"]}
        assert set(replicas) == set(NAMES)
        assert [replicas[n]["requests_60m"] for n in NAMES] == [3, 3, 1]
        assert all(r["live"] for r in replicas.values())
        assert [n for n, r in replicas.items() if r["self"]] == [name]
        row = next(r for r in overview["last_5m"] if r["route"] == ROUTE)
        assert row["requests"] == 6 and row["success_rate"] == 1.0 and row["p50_s"] > 0
        assert sum(minute["requests"] for minute in overview["timeline"]) == expected
        errors = overview["errors"]
        assert [(e["replica"], e["status"]) for e in errors] == [("B", 404)]


def test_the_panel_in_a_browser_shows_the_fleet(browser: Any, trio: Fleet) -> None:
    replica = trio.replicas["C"]  # served one request of the seven
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{replica.url}/admin/")
        page.fill("#key", ADMIN)
        page.click("button[type=submit]")
        page.wait_for_selector("#replicas tbody tr", timeout=15_000)
        assert page.text_content("#requests-5m") == "7"
        assert "Fleet-wide: 3 replicas" in (page.text_content("#scope") or "")
        rows = page.locator("#replicas tbody tr").all_text_contents()
        assert sorted(r[0] for r in rows) == ["A", "B", "C"]
        assert any("(this one)" in r for r in rows if r.startswith("C"))
        page.screenshot(path=str(_artifacts() / "panel-overview-fleet.png"), full_page=True)
        page.goto(f"{replica.url}/admin/#keys")
        page.wait_for_selector("#keys-scope", timeout=15_000)
        assert "Fleet-wide" in (page.text_content("#keys-scope") or "")
    finally:
        context.close()


def test_without_redis_the_overview_answers_with_local_figures(
    trio: Fleet, shared_redis: RedisServer
) -> None:
    a = trio.replicas["A"]
    assert shared_redis.proc is not None
    shared_redis.proc.send_signal(signal.SIGSTOP)  # Redis hangs: no answer at all
    try:
        started = time.monotonic()
        overview = a.admin("/admin/api/overview")
        assert time.monotonic() - started < 5  # the board gives up after 1 s
        assert overview["scope"] == "replica" and "Redis" in overview["notice"]
    finally:
        shared_redis.proc.send_signal(signal.SIGCONT)
    shared_redis.stop()  # Redis is gone: connections refused
    try:
        started = time.monotonic()
        overview = a.admin("/admin/api/overview")
        assert time.monotonic() - started < 5  # answered, no hang (the timeout is 1 s)
        assert overview["scope"] == "replica" and "Redis" in overview["notice"]
        assert [r["replica"] for r in overview["replicas"]] == ["A"]
        assert total(overview) == SENT["A"]
        assert generate(a, ROUTE) == 200  # requests go on (state fails open)
        assert total(a.admin("/admin/api/overview")) == SENT["A"] + 1
    finally:
        shared_redis.start()  # the same port, empty: nothing persisted
    # Redis is back but empty: every replica writes all it has again, and A's request during
    # the outage counts too.
    expected = sum(SENT.values()) + 2
    for name in NAMES:
        overview = wait_for(
            trio.replicas[name], lambda o: o["scope"] == "fleet" and total(o) == expected
        )
        assert overview["notice"] is None and len(overview["replicas"]) == 3
        assert [e["replica"] for e in overview["errors"]] == ["B"]


def _artifacts() -> Path:
    from tests.panel.test_panel_browser import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def sign_in(replica: Replica, key: str) -> tuple[int, float]:
    """POST /admin/login: the status and Retry-After (0 when none)."""
    request = urllib.request.Request(
        f"{replica.url}/admin/login",
        data=json.dumps({"key": key}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status), 0.0
    except urllib.error.HTTPError as err:
        return int(err.code), float(err.headers.get("Retry-After") or 0)


def test_the_sign_in_back_off_holds_across_the_fleet(trio: Fleet) -> None:
    a, b, c = (trio.replicas[n] for n in NAMES)
    assert sign_in(a, "wrong-admin-key")[0] == 401
    status, retry_after = sign_in(b, ADMIN)  # B never saw a wrong key from this address
    assert status == 429 and retry_after >= 1
    time.sleep(retry_after + 0.2)
    assert sign_in(c, ADMIN) == (200, 0.0)  # and a success clears it for the fleet
    assert sign_in(b, ADMIN) == (200, 0.0)
