"""The heavy targets (issue 19: many open requests, many polling jobs, Redis state; issue 14:
url with S3 storage) are judged from their cells, and a missing or incomplete cell is never a
pass."""

from __future__ import annotations

from typing import Any

from bench import report_heavy
from bench.judging import Target
from bench.scenarios import MANY_OPEN, MANY_POLL

OPEN = f"many open requests ({MANY_OPEN} x 10 s)"
POLLS = f"many polling jobs ({MANY_POLL}, 30 s, polled every 2 s)"


def _batch(scenario: str, target: str, c: int, expected: int, **kw: Any) -> dict[str, Any]:
    cell = {
        "scenario": scenario,
        "target": target,
        "c": c,
        "requests": expected,
        "expected": expected,
        "errors": 0,
        "rps": 490.0,
        "mean_ms": 10_050.0,
        "p50_ms": 10_040.0,
        "p99_ms": 10_300.0,
        "duration_s": 20.4,
        "peak_rss_mib": 250.0,
        "cpu_ms_per_req": 1.0,
        "upstream_peak_open": c,
    }
    return cell | kw


def _open(**gateway: Any) -> dict[str, Target]:
    cells = [
        _batch("long", "direct", MANY_OPEN, 2 * MANY_OPEN, rps=495.0, mean_ms=10_010.0),
        _batch("long", "pixgate", MANY_OPEN, 2 * MANY_OPEN, **gateway),
    ]
    return {t.name: t for t in report_heavy.heavy_targets(cells, {})}


def test_many_open_requests_pass_and_each_bound_fails_it() -> None:
    ok = _open()[OPEN]
    assert ok.result == "pass", ok
    assert "0.990x" in ok.measured and f"upstream held {MANY_OPEN} at once" in ok.measured
    assert _open(rps=480.0)[OPEN].result == "fail"  # 0.97x direct
    assert _open(p99_ms=10_700.0)[OPEN].result == "fail"
    assert _open(peak_rss_mib=420.0)[OPEN].result == "fail"
    assert _open(errors=1)[OPEN].result == "fail"
    assert _open(requests=2 * MANY_OPEN - 1)[OPEN].result == "fail"  # one never came back


def _polls(gateway_cpu: float, **gateway: Any) -> Target:
    cells = [
        _batch("poll-long", "floor", MANY_POLL, MANY_POLL, cpu_ms_per_req=2.0),
        _batch("poll-long", "pixgate", MANY_POLL, MANY_POLL, cpu_ms_per_req=gateway_cpu, **gateway),
    ]
    return {t.name: t for t in report_heavy.heavy_targets(cells, {})}[POLLS]


def test_many_polling_jobs_are_judged_against_the_floor_cpu_per_job() -> None:
    ok = _polls(2.2)
    assert ok.result == "pass" and "(1.10x the floor)" in ok.measured
    assert ok.floor.startswith(f"{MANY_POLL}/{MANY_POLL} done, 2.00 ms CPU/job")
    assert _polls(2.3).result == "fail"
    assert _polls(2.0, peak_rss_mib=310.0).result == "fail"
    assert _polls(2.0, requests=MANY_POLL - 1).result == "fail"


def test_missing_heavy_cells_are_not_passes() -> None:
    rows = report_heavy.heavy_targets([], {"pixgate-s3": {"status": "weed not installed"}})
    assert [(t.result, t.note) for t in rows] == [
        ("n/a", "cell missing"),
        ("n/a", "cell missing"),
        ("n/a", "weed not installed"),
        ("n/a", "cell missing (not run)"),
        ("n/a", "cell missing (not run)"),
    ]


def test_s3_storage_is_reported_beside_local_per_concurrency() -> None:
    cells = [
        _batch("store", "pixgate", 1, 100, p50_ms=8.0, cpu_ms_per_req=8.0, peak_rss_mib=70.0),
        _batch("store", "pixgate-s3", 1, 100, p50_ms=20.5, cpu_ms_per_req=9.5, peak_rss_mib=90.0),
    ]
    (row,) = report_heavy.heavy_targets(cells, {})[2:3]
    assert row.name == "url with S3 storage, c=1" and row.result == "reported"
    assert row.measured.startswith("+12.50 ms p50 (20.50 vs 8.00 ms), +1.500 ms CPU/req")
    cells[1]["errors"] = 3
    assert report_heavy.heavy_targets(cells, {})[2].result == "fail"


def _redis(**redis: Any) -> list[Target]:
    cells = [
        _batch("redis", "pixgate", 1, 900, p50_ms=0.70, cpu_ms_per_req=0.60),
        _batch("redis", "pixgate-redis", 1, 900, p50_ms=0.95, cpu_ms_per_req=0.80),
        _batch("redis", "pixgate", 16, 4000, p50_ms=10.0, cpu_ms_per_req=0.40),
        _batch("redis", "pixgate-redis", 16, 4000, p50_ms=12.0) | redis,
    ]
    return report_heavy.redis_targets(cells, {})


def test_redis_state_is_judged_against_memory_state() -> None:
    p50, cpu = _redis(cpu_ms_per_req=0.44)
    assert p50.name.startswith("Redis state: added p50, small c=1") and p50.result == "pass"
    assert p50.measured == "+0.250 ms (0.950 vs 0.700 ms)" and p50.floor == "memory: 0.700 ms"
    assert cpu.result == "pass" and cpu.measured.startswith("+0.040 ms (0.440 vs 0.400 ms)")
    assert _redis(cpu_ms_per_req=0.46)[1].result == "fail"
    assert _redis(cpu_ms_per_req=0.44, errors=2)[1].result == "fail"


def test_redis_state_without_redis_server_is_not_a_pass() -> None:
    status = {"pixgate-redis": {"status": "redis-server not installed"}}
    rows = report_heavy.redis_targets([], status)
    assert [t.result for t in rows] == ["n/a", "n/a"]
    assert "redis-server not installed" in rows[0].note
