"""Typed keys for what the aiohttp app and requests carry."""

from __future__ import annotations

from aiohttp import web

from ..clients.admission import Admission
from ..metrics import GatewayMetrics
from ..runtime.lifecycle.overload import Limits
from ..runtime.lifecycle.reload import Reloader
from ..runtime.lifecycle.state import GatewayState
from ..settings import Settings

STATE = web.AppKey("pixgate_state", GatewayState)
SETTINGS = web.AppKey("pixgate_settings", Settings)
RELOADER = web.AppKey("pixgate_reloader", Reloader)
METRICS = web.AppKey("pixgate_metrics", GatewayMetrics)
ADMISSION = web.AppKey("pixgate_admission", Admission)
LIMITS = web.AppKey("pixgate_limits", Limits)  # in-flight requests and buffered bytes
# What one request carries between middleware and handlers: api/context.py.
