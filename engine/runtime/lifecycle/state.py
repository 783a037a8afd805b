"""The live config reference and the runtime objects that outlive a snapshot."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import aiohttp

from ...config.loader import ConfigSnapshot
from ...state import MemoryState, StateBackend
from ...storage.hub import StorageHub
from ..routing.keys import KeyPools
from ..routing.router import Router
from ..service import ImageService
from .bodygate import BodyGate


@dataclass(slots=True)
class GatewayState:
    """`snapshot` is swapped whole by a reload; a request reads it once, at its start."""

    snapshot: ConfigSnapshot
    storage: StorageHub
    router: Router = field(default_factory=Router)
    body_gate: BodyGate = field(default_factory=BodyGate)
    keys: KeyPools = field(default_factory=KeyPools)
    # Key health, breakers, cursors, leases: `memory` (over `keys`) unless Redis is configured.
    backend: StateBackend | None = None
    # Sent on calls to on-gateway upstreams (the demo), which answer nothing else: they are
    # not a public endpoint that bypasses client keys.
    internal_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # Where this process reaches itself (set by multi-worker serving); else the request's socket.
    internal_url: str | None = None
    draining: bool = False  # shutting down: not ready for new requests
    _service: ImageService | None = None
    _fetch_session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        if self.backend is None:
            self.backend = MemoryState(self.keys)

    @property
    def shared(self) -> StateBackend:
        assert self.backend is not None  # set in __post_init__
        return self.backend

    @property
    def service(self) -> ImageService:
        if self._service is None:
            raise RuntimeError("the gateway has not started (no HTTP session yet)")
        return self._service

    @property
    def fetch_session(self) -> aiohttp.ClientSession:
        """The SSRF-guarded session for client-supplied image URLs (never the upstream one)."""
        if self._fetch_session is None:
            raise RuntimeError("the gateway has not started (no HTTP session yet)")
        return self._fetch_session

    def start(self, service: ImageService, fetch_session: aiohttp.ClientSession) -> None:
        self._service = service
        self._fetch_session = fetch_session
