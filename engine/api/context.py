"""What the gateway's middleware and handlers share: the app-wide parts a request uses
(`Gateway`, one per app) and what one request carries from the middleware through its
handler and back to the access log (`RequestContext`, one per request).

One object each, stored once (`app[GATEWAY]`, `request[CONTEXT]`) and read with one lookup,
instead of a key per field: a request read and wrote aiohttp's mappings about 40 times
(each a Python call in aiohttp), for the same handful of values.
"""

from __future__ import annotations

from aiohttp import web

from ..clients.admission import Admission
from ..clients.spec import ClientSpec
from ..config.loader import ConfigSnapshot
from ..metrics import GatewayMetrics
from ..panel.recent import RecentStats
from ..panel.session import Sessions
from ..runtime.calls.waitclock import WaitClock
from ..runtime.lifecycle.overload import Limits
from ..runtime.lifecycle.state import GatewayState
from ..settings import Settings
from ..usage.meter import Meter


class Gateway:
    """The app's parts a request uses (each also under its own app key, for the rest)."""

    __slots__ = (
        "admission",
        "limits",
        "meter",
        "metrics",
        "recent",
        "sessions",
        "settings",
        "state",
    )

    def __init__(
        self,
        state: GatewayState,
        settings: Settings,
        metrics: GatewayMetrics,
        limits: Limits,
        admission: Admission,
        meter: Meter,
        recent: RecentStats | None,
        sessions: Sessions | None,
    ) -> None:
        self.state = state
        self.settings = settings
        self.metrics = metrics
        self.limits = limits
        self.admission = admission
        self.meter = meter
        self.recent = recent  # the admin panel's overview (None without an admin key)
        self.sessions = sessions  # the admin panel's sign-ins (None: no admin key)


class RequestContext:
    """One request's own values. `snapshot` is the config the request keeps to its end (the
    live one when it started). Who called (`client`, `relay`) is set by client auth;
    `model`, `provider` and `wait_clock` by the handler, for the access log and metrics."""

    __slots__ = (
        "client",
        "gateway",
        "id",
        "model",
        "provider",
        "rate_headers",
        "relay",
        "snapshot",
        "wait_clock",
    )

    def __init__(self, request_id: str, gateway: Gateway) -> None:
        self.id = request_id
        self.gateway = gateway
        self.snapshot: ConfigSnapshot = gateway.state.snapshot
        self.client: ClientSpec | None = None  # a clients.yaml caller
        self.relay: tuple[str, str] | None = None  # a relayed call: (provider, its key)
        self.rate_headers: dict[str, str] | None = None  # a limited client's x-ratelimit-*
        self.model: str | None = None
        self.provider: str | None = None
        self.wait_clock: WaitClock | None = None  # the upstream waits, not the request's own


GATEWAY = web.AppKey("pixgate_gateway", Gateway)
CONTEXT = web.RequestKey("pixgate_context", RequestContext)


def context(request: web.Request) -> RequestContext:
    """The request's context (the middleware made it before anything else ran)."""
    return request[CONTEXT]
