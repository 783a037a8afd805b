"""What a request updates in the metrics, cheaply: gauges of what requests hold (in flight,
buffered bytes) are read from the live limits when metrics are asked, not set at every
change; one process counts in values without a lock; with --workers every value goes to the
shared files, the live gauges refreshed into them."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import values

from engine.api.bounds import publish
from engine.metrics import GatewayMetrics, render
from engine.metrics.gateway import ENV, enable_multiprocess
from engine.metrics.loopvalue import LoopValue
from engine.runtime.lifecycle.overload import Limits


def _value(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


def _scrape(metrics: GatewayMetrics) -> str:
    metrics.refresh()  # as GET /metrics does before it renders
    empty = {"keys": {}, "circuits": {}, "config_version": "v", "config_loaded_at": 0.0,
             "reloads": {}}  # fmt: skip
    return render(metrics, lambda: empty).decode()


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
    monkeypatch.setenv(ENV, str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # put back afterwards
    enable_multiprocess(tmp_path)
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
    empty = {"keys": {}, "circuits": {}, "config_version": "v", "config_loaded_at": 0.0,
             "reloads": {}}  # fmt: skip
    text = render(shared, lambda: empty).decode()  # another worker's scrape: no refresh here
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
