"""Prometheus metrics: what the gateway counts on the hot path, and what it reads at scrape."""

from .gateway import GatewayMetrics, enable_multiprocess, multiprocess_dir
from .scrape import render

__all__ = ["GatewayMetrics", "enable_multiprocess", "multiprocess_dir", "render"]
