"""A scrape: the counted metrics plus what is read from live state at that moment.

Key health, circuit states and the config version are not counted on the hot path: they are
read from the answering process's state when Prometheus asks (with shared state in Redis,
every replica sees the fleet's view).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .gateway import GatewayMetrics, multiprocess_dir

StateReader = Callable[[], dict[str, Any]]


class StateCollector(Collector):
    """Reads a dict from the live state: {"keys": {provider: [state, ...]},
    "circuits": {provider: state}, "config_version": str, "config_loaded_at": float,
    "reloads": {"succeeded": n, "failed": n, "unchanged": n}}."""

    def __init__(self, read: StateReader) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        now = self.read()
        keys = GaugeMetricFamily(
            "pixgate_keys", "Provider keys by health state (never key material)",
            labels=["provider", "state"],
        )  # fmt: skip
        for provider, states in sorted(now["keys"].items()):
            for state, count in sorted(Tally(states).items()):
                keys.add_metric([provider, state], count)
        yield keys
        circuits = GaugeMetricFamily(
            "pixgate_circuit_state", "1 for the state each provider's circuit breaker is in",
            labels=["provider", "state"],
        )  # fmt: skip
        for provider, state in sorted(now["circuits"].items()):
            for name in ("closed", "open", "half_open"):
                circuits.add_metric([provider, name], 1.0 if state == name else 0.0)
        yield circuits
        info = GaugeMetricFamily(
            "pixgate_config_info", "The live config version", labels=["version"]
        )
        info.add_metric([now["config_version"]], 1.0)
        yield info
        yield GaugeMetricFamily(
            "pixgate_config_loaded_timestamp_seconds",
            "When the live config was built (Unix time)",
            value=now["config_loaded_at"],
        )
        reloads = GaugeMetricFamily(
            "pixgate_config_reloads",
            "Config reloads this process has seen, by result (applied, rejected, unchanged)",
            labels=["result"],
        )
        for result, count in sorted(now["reloads"].items()):
            reloads.add_metric([result], count)
        yield reloads
        backend = now.get("state")
        if backend is not None:  # the state backend: memory, or Redis and whether it answers
            yield GaugeMetricFamily(
                "pixgate_state_degraded",
                "1 while Redis is configured but unreachable: serving on local state",
                value=1.0 if backend["degraded"] else 0.0,
            )
            for name, what in (
                ("errors", "State backend calls that failed or timed out"),
                ("fallbacks", "Operations served by local state instead of Redis"),
                ("outages", "Times Redis went from reachable to unreachable"),
            ):
                yield GaugeMetricFamily(f"pixgate_state_{name}", what, value=backend[name])
        storage = now.get("storage")
        if storage is not None:
            yield from _storage(storage)


def _storage(status: dict[str, Any]) -> Iterator[Metric]:
    """Storage health as the answering process sees it (its upload counters are in
    GatewayMetrics, so that --workers sums them)."""
    yield GaugeMetricFamily(
        "pixgate_storage_degraded",
        "1 while the storage backend fails (images are kept on local disk meanwhile)",
        value=1.0 if status["status"] == "degraded" else 0.0,
    )


def render(metrics: GatewayMetrics, read: StateReader) -> bytes:
    registry = CollectorRegistry()
    if metrics.registry is None:
        directory = multiprocess_dir()
        assert directory is not None
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(metrics.registry))
    registry.register(StateCollector(read))
    return generate_latest(registry)


class _Forward(Collector):
    """The app's own registry, collected inside the scrape's."""

    def __init__(self, inner: CollectorRegistry) -> None:
        self.inner = inner

    def collect(self) -> Iterable[Metric]:
        return self.inner.collect()
