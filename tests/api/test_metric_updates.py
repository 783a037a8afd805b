"""What a request updates in the metrics, cheaply: gauges of what requests hold (in flight,
buffered bytes) are read from the live limits when metrics are asked, not set at every
change; one process counts in values without a lock; with --workers every value goes to the
shared files, the live gauges refreshed into them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest, values

from engine.api.bounds import publish
from engine.metrics import GatewayMetrics, render
from engine.metrics.gateway import (
    DURATION_BUCKETS,
    ENV,
    OVERHEAD_BUCKETS,
    enable_multiprocess,
)
from engine.metrics.loopvalue import LoopValue
from engine.runtime.lifecycle.overload import Limits
from engine.usage.counters import Amounts, Row


def _value(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


def _empty() -> dict[str, Any]:
    return {"keys": {}, "circuits": {}, "config_version": "v", "config_loaded_at": 0.0,
            "reloads": {}}  # fmt: skip


def _scrape(metrics: GatewayMetrics) -> str:
    metrics.refresh()  # as GET /metrics does before it renders
    return render(metrics, _empty).decode()


def _as_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics as under --workers: values in shared files under `tmp_path` (undone after)."""
    monkeypatch.setenv(ENV, str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # put back afterwards
    enable_multiprocess(tmp_path)


def _hold(limits: Limits) -> None:
    limits.in_flight.enter()
    limits.in_flight.enter()
    charge = limits.charge()
    assert charge.try_take(700)


def test_one_process_reads_the_limits_at_the_scrape() -> None:
    metrics, limits = GatewayMetrics(), Limits(10, 1000, 1.0)
    publish(limits, metrics)
    assert _value(_scrape(metrics), "pixgate_in_flight_requests") == 0
    _hold(limits)
    text = _scrape(metrics)
    assert _value(text, "pixgate_in_flight_requests") == 2
    assert _value(text, "pixgate_buffered_bytes") == 700
    assert _value(text, "pixgate_buffered_bytes_limit") == 1000


def test_workers_copy_the_limits_into_the_shared_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_workers(tmp_path, monkeypatch)
    metrics, limits = GatewayMetrics(), Limits(10, 1000, 1.0)
    publish(limits, metrics)
    assert metrics.shared
    _hold(limits)
    metrics.refresh()  # each second, and at a scrape (api/metrics.py)
    text = _scrape(metrics)
    assert _value(text, "pixgate_in_flight_requests") == 2
    assert _value(text, "pixgate_buffered_bytes") == 700


def test_one_process_counts_without_locks_and_workers_keep_the_shared_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)  # as prometheus-client starts
    metrics = GatewayMetrics()
    assert values.ValueClass is LoopValue
    for _ in range(3):
        metrics.request("/v1/images/generations", "r", "m", 200, 0.2, 0.001, 10)
    text = _scrape(metrics)
    assert 'pixgate_requests_total{endpoint="/v1/images/generations",model="m",route="r",' \
        'status="200"} 3.0' in text  # fmt: skip
    assert 'pixgate_response_bytes_total{endpoint="/v1/images/generations"} 30.0' in text
    monkeypatch.setenv(ENV, str(tmp_path))
    enable_multiprocess(tmp_path)
    shared = GatewayMetrics()
    assert values.ValueClass is not LoopValue  # --workers: every value in the shared files
    shared.request("/v1/images/generations", "r", "m", 200, 0.2, 0.001, 10)
    text = render(shared, _empty).decode()  # another worker's scrape: no refresh here
    assert 'status="200"} 1.0' in text  # in the files as the request is answered


def test_counts_reach_a_scrape_summed() -> None:
    metrics = GatewayMetrics()
    metrics.attempt("p", "success", 0.5)
    metrics.attempt("p", "success", 0.5)
    metrics.delivered("p", 3)
    text = _scrape(metrics)
    assert 'pixgate_upstream_attempts_total{outcome="success",provider="p"} 2.0' in text
    assert 'pixgate_images_generated_total{provider="p"} 3.0' in text
    assert 'pixgate_upstream_latency_seconds_count{provider="p"} 2.0' in text


# On a bucket's bound, between bounds, past the last (+Inf), and zero.
DURATIONS = (0.1, 0.1000001, 0.3, 2.5, 1000.0, 0.0, 7.0)


def _series(text: str, name: str) -> list[str]:
    """The lines of one histogram, without their metric names' prefix (comparable)."""
    return sorted(
        line.split("{", 1)[1] if "{" in line else line
        for line in text.splitlines()
        if line.startswith(name) and "_created" not in line
    )


def _expected(
    name: str, buckets: tuple[float, ...], label: str, value: str, scale: float = 1.0
) -> list[str]:
    """What prometheus-client shows for DURATIONS (times `scale`) observed one by one."""
    registry = CollectorRegistry()
    direct = Histogram(name, "d", [label], buckets=buckets, registry=registry)
    for seconds in DURATIONS:
        direct.labels(value).observe(seconds * scale)
    return _series(generate_latest(registry).decode(), name)


def test_summed_observations_reach_a_scrape_as_each_observed_alone() -> None:
    metrics = GatewayMetrics()
    for seconds in DURATIONS:
        metrics.request("/v1/images/generations", "r", "m", 200, seconds, seconds * 0.001, 10)
        metrics.attempt("p", "success", seconds)
    unread = render(metrics, _empty).decode()  # summed, not handed over yet
    assert 'pixgate_request_duration_seconds_count{endpoint="/v1/images/generations"} 0.0' in unread
    text = _scrape(metrics)
    endpoint = "/v1/images/generations"
    for name, buckets, label, value, scale in (
        ("pixgate_request_duration_seconds", DURATION_BUCKETS, "endpoint", endpoint, 1.0),
        ("pixgate_overhead_seconds", OVERHEAD_BUCKETS, "endpoint", endpoint, 0.001),
        ("pixgate_upstream_latency_seconds", DURATION_BUCKETS, "provider", "p", 1.0),
    ):
        assert _series(text, name) == _expected(name, buckets, label, value, scale)
    # a second round adds to the first
    metrics.attempt("p", "success", 0.2)
    assert 'pixgate_upstream_latency_seconds_count{provider="p"} 8.0' in _scrape(metrics)


def test_workers_find_each_observation_in_the_shared_files_when_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_workers(tmp_path, monkeypatch)
    metrics = GatewayMetrics()
    for seconds in DURATIONS:
        metrics.request("/v1/images/generations", "r", "m", 200, seconds, None, 10)
    text = render(metrics, _empty).decode()  # another worker's scrape: no refresh here
    name = "pixgate_request_duration_seconds"
    expected = _expected(name, DURATION_BUCKETS, "endpoint", "/v1/images/generations")
    assert _series(text, name) == expected
    assert 'pixgate_overhead_seconds_count{endpoint="/v1/images/generations"} 0.0' in text


def test_usage_rows_reach_a_scrape_summed() -> None:
    metrics = GatewayMetrics()
    alice = Row("alice", "r", "p", "m")
    metrics.usage(alice, Amounts(images=2, cost_usd=0.25, upstream_seconds=1.5))
    metrics.usage(alice, Amounts(failures=1, upstream_seconds=0.5))
    metrics.usage(Row("bob", "r", "p", "m"), Amounts(images=1))
    text = _scrape(metrics)
    labels = '{client="alice",model="m",provider="p",route="r"}'
    for name, value in (
        ("requests", 2.0), ("images", 2.0), ("failures", 1.0), ("cost_usd", 0.25),
        ("upstream_seconds", 2.0),
    ):  # fmt: skip
        assert f"pixgate_client_{name}_total{labels} {value}" in text
    assert 'pixgate_client_images_total{client="bob",model="m",provider="p",route="r"} 1.0' in text
    metrics.usage(alice, Amounts(images=1))  # after a scrape: added to what was handed over
    assert f"pixgate_client_images_total{labels} 3.0" in _scrape(metrics)
