"""The gateway's counters and histograms, with bounded labels.

Labels never carry prompts, request ids, client keys or a client's free-form model name: a
model a client names that no route knows is counted as "other". With `--workers N` the
supervisor turns on prometheus-client's multi-process mode before the workers start, so
each worker writes its values to a shared directory and a scrape sums them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, NamedTuple, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.metrics import MetricWrapperBase

from .loopvalue import use_loop_values
from .pending import Pending

ENV = "PROMETHEUS_MULTIPROC_DIR"
# Image requests last from a fraction of a second to many minutes (polling providers).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 900)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
OTHER = "other"
LIVE_REFRESH = 1.0  # seconds: how stale a worker's live gauges may be in a --workers scrape
M = TypeVar("M", bound=MetricWrapperBase)


class UsageRow(Protocol):
    @property
    def client(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...


class UsageAmounts(Protocol):
    requests: int
    images: int
    failures: int
    cost_usd: float
    upstream_seconds: float


class Children(Generic[M]):
    """A labelled metric's children, each looked up once. prometheus-client's `labels()`
    checks and converts its arguments and takes a lock on every call, a dozen times per
    request; our label values are bounded (names from the config), so the children are kept
    here by their label values, as the metric itself keeps them."""

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class _RequestSeries(NamedTuple):
    counters: tuple[Counter, Counter]  # requests, bytes_out: summed together
    duration: Histogram
    overhead: Histogram


def multiprocess_dir() -> str | None:
    return os.environ.get(ENV) or None


def enable_multiprocess(directory: Path) -> None:
    """Before workers fork: every metric created after this writes to `directory`."""
    os.environ[ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class GatewayMetrics:
    """One app's metrics. In multi-process mode they live in the shared directory and
    `registry` is None (a scrape collects the directory); otherwise in a registry of their
    own, so that several apps in one process (tests) never share counts."""

    def __init__(self) -> None:
        self.registry = None if multiprocess_dir() else CollectorRegistry(auto_describe=True)
        if self.registry is not None:
            use_loop_values()  # counted on the event loop's thread only: no lock per update
        reg = self.registry
        self.requests = Counter(
            "pixgate_requests", "Client requests by endpoint, route, model and status",
            ["endpoint", "route", "model", "status"], registry=reg,
        )  # fmt: skip
        self.duration = Histogram(
            "pixgate_request_duration_seconds", "Client request duration, by endpoint",
            ["endpoint"], buckets=DURATION_BUCKETS, registry=reg,
        )  # fmt: skip
        self.overhead = Histogram(
            "pixgate_overhead_seconds",
            "Time the gateway itself spent on a request, excluding waits on upstreams",
            ["endpoint"], buckets=OVERHEAD_BUCKETS, registry=reg,
        )  # fmt: skip
        self.in_flight = Gauge(
            "pixgate_in_flight_requests",
            "Client requests being served (those PIXGATE_MAX_IN_FLIGHT counts)",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        # The overload bounds (runtime/lifecycle/overload.py); limits as gauges so that a
        # dashboard can show saturation (with --workers, livesum adds the workers' up).
        self.in_flight_limit = Gauge(
            "pixgate_in_flight_limit", "PIXGATE_MAX_IN_FLIGHT (0: no bound)",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.buffered_bytes = Gauge(
            "pixgate_buffered_bytes",
            "Bytes of request bodies and fetched input images reserved by requests",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.buffered_bytes_limit = Gauge(
            "pixgate_buffered_bytes_limit", "PIXGATE_MAX_BUFFERED_BYTES (0: no bound)",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.buffered_waiting = Gauge(
            "pixgate_buffered_bytes_waiting", "Requests waiting for their bytes",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.overloaded = Counter(
            "pixgate_overload_refusals", "Requests refused with a 503 at a bound, by bound "
            "(in_flight, buffered_bytes)", ["reason"], registry=reg,
        )  # fmt: skip
        self.polling = Gauge(
            "pixgate_polling_jobs", "Upstream attempts of polling providers in progress",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.attempts = Counter(
            "pixgate_upstream_attempts", "Upstream attempts by provider and outcome",
            ["provider", "outcome"], registry=reg,
        )  # fmt: skip
        self.upstream_latency = Histogram(
            "pixgate_upstream_latency_seconds", "Duration of one upstream attempt, by provider",
            ["provider"], buckets=DURATION_BUCKETS, registry=reg,
        )  # fmt: skip
        self.images = Counter(
            "pixgate_images_generated", "Images handed to clients, by provider",
            ["provider"], registry=reg,
        )  # fmt: skip
        self.storage_events = Counter(
            "pixgate_storage_events",
            "Storage uploads: uploaded, retried, kept on local disk after failing "
            "(local_fallback), uploaded again later (reupload)",
            ["event"], registry=reg,
        )  # fmt: skip
        usage = ["client", "route", "provider", "model"]  # all names from the config
        self.client_requests = Counter(
            "pixgate_client_requests", "Image requests admitted, by client, route, provider "
            "and upstream model (GET /admin/usage has the same by day)", usage, registry=reg,
        )  # fmt: skip
        self.client_images = Counter(
            "pixgate_client_images", "Images delivered, by client, route, provider and model",
            usage, registry=reg,
        )  # fmt: skip
        self.client_failures = Counter(
            "pixgate_client_failures", "Admitted image requests that ended in an error",
            usage, registry=reg,
        )  # fmt: skip
        self.client_cost = Counter(
            "pixgate_client_cost_usd", "List-price cost of delivered images (USD)",
            usage, registry=reg,
        )  # fmt: skip
        self.client_upstream = Counter(
            "pixgate_client_upstream_seconds", "Time spent waiting on upstreams",
            usage, registry=reg,
        )  # fmt: skip
        self.bytes_out = Counter(
            "pixgate_response_bytes", "Bytes of response bodies sent to clients, by endpoint",
            ["endpoint"], registry=reg,
        )  # fmt: skip
        # One lookup per request for its series (endpoint, route, model, status) and one per
        # usage row: the children of every metric it moves, together.
        self._request_series: dict[tuple[str, str, str, int], _RequestSeries] = {}
        self._usage_series: dict[tuple[str, str, str, str], tuple[Counter, ...]] = {}
        self._attempt_series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._live: list[tuple[Gauge, Callable[[], float]]] = []
        # Counter increments and histogram observations, summed per child until metrics
        # are read (pending.py): `flush` hands them over.
        self._pending = Pending()
        self._add = self._pending.add
        self._row = self._pending.row
        self._observe = self._pending.observe
        self._images = Children(self.images)

    def request(
        self,
        endpoint: str,
        route: str,
        model: str,
        status: int,
        seconds: float,
        overhead: float | None,
        sent: int,
    ) -> None:
        key = (endpoint, route, model, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = _RequestSeries(
                (
                    self.requests.labels(endpoint, route, model, str(status)),
                    self.bytes_out.labels(endpoint),
                ),
                self.duration.labels(endpoint),
                self.overhead.labels(endpoint),
            )
        sums = self._row(series.counters)
        sums[0] += 1
        sums[1] += sent
        self._observe(series.duration, seconds)
        if overhead is not None:
            self._observe(series.overhead, overhead)
        if self.registry is None:  # --workers: the shared files are exact when answered
            self.flush()

    def flush(self) -> None:
        """Hand the summed counts and observations to prometheus-client: before metrics are
        read (a scrape), with --workers at the end of every request too."""
        self._pending.flush()

    def live(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """A gauge that reads its value from the live state when asked, instead of being
        set at every change (a request moved three gauges up and down, each call a lock).
        One process: read at each scrape. With --workers the value has to be in the
        shared files: `refresh` copies it there (each second, and at a scrape)."""
        if self.registry is not None:
            gauge.set_function(read)
        else:
            self._live.append((gauge, read))

    @property
    def shared(self) -> bool:
        """Multi-process mode (--workers): values in the shared files, `refreshing` them."""
        return self.registry is None

    def refresh(self) -> None:
        """Before metrics are read, on the event loop's thread: the summed counts handed
        over, the live gauges copied (multi-process mode)."""
        self.flush()
        for gauge, read in self._live:
            gauge.set(read())

    async def refreshing(self, every: float = LIVE_REFRESH) -> None:
        """Refresh until cancelled (multi-process mode: counts of work that ends without a
        request, a background job's, reach the shared files within `every` seconds)."""
        while True:
            self.refresh()
            await asyncio.sleep(every)

    def storage_event(self, event: str) -> None:
        self.storage_events.labels(event).inc()

    def usage(self, row: UsageRow, amounts: UsageAmounts) -> None:
        """Every series of the row exists from its first request on; adding 0 changes none."""
        labels = (row.client, row.route, row.provider, row.model)
        series = self._usage_series.get(labels)
        if series is None:
            series = self._usage_series[labels] = tuple(
                metric.labels(*labels)
                for metric in (
                    self.client_requests,
                    self.client_images,
                    self.client_failures,
                    self.client_cost,
                    self.client_upstream,
                )
            )
        sums = self._pending.row(series)
        sums[0] += amounts.requests
        sums[1] += amounts.images
        sums[2] += amounts.failures
        sums[3] += amounts.cost_usd
        sums[4] += amounts.upstream_seconds

    def attempt(self, provider: str, outcome: str, seconds: float) -> None:
        series = self._attempt_series.get((provider, outcome))
        if series is None:
            series = self._attempt_series[provider, outcome] = (
                self.attempts.labels(provider, outcome),
                self.upstream_latency.labels(provider),
            )
        self._add(series[0], 1)
        self._observe(series[1], seconds)

    def delivered(self, provider: str, images: int) -> None:
        self._add(self._images(provider), images)
