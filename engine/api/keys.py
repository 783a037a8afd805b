"""Typed keys for what the aiohttp app and requests carry."""

from __future__ import annotations

from aiohttp import web

from ..clients.admission import Admission
from ..clients.spec import ClientSpec
from ..config.loader import ConfigSnapshot
from ..metrics import GatewayMetrics
from ..runtime.calls.waitclock import WaitClock
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

# What one request carries between middleware and handlers.
REQUEST_ID = web.RequestKey("pixgate_request_id", str)
SNAPSHOT = web.RequestKey("pixgate_snapshot", ConfigSnapshot)  # one config to the end
MODEL = web.RequestKey("pixgate_model", str)  # for the access log
PROVIDER = web.RequestKey("pixgate_provider", str)  # for the access log
# Who called: client_auth sets both on every request it lets through (None when not that
# kind of caller), so that the many readers after it find them without a KeyError.
RELAY: web.RequestKey[tuple[str, str] | None] = web.RequestKey("pixgate_relay")  # provider, key
CLIENT: web.RequestKey[ClientSpec | None] = web.RequestKey("pixgate_client")  # clients.yaml's
WAIT_CLOCK = web.RequestKey("pixgate_wait_clock", WaitClock)
# OpenAI's x-ratelimit-* headers for the client's rpm limit, added to the answer (client
# auth sets None first, so that the middleware's look finds it without a KeyError).
RATE_HEADERS: web.RequestKey[dict[str, str] | None] = web.RequestKey("pixgate_rate_headers")
