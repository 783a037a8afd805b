"""The live config reference and the runtime objects that outlive a snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config.loader import ConfigSnapshot
from .keys import KeyPools
from .router import Router
from .service import ImageService
from .storage import LocalStorage


@dataclass(slots=True)
class GatewayState:
    """`snapshot` is swapped whole by a reload; a request reads it once, at its start."""

    snapshot: ConfigSnapshot
    storage: LocalStorage
    router: Router = field(default_factory=Router)
    keys: KeyPools = field(default_factory=KeyPools)
    _service: ImageService | None = None

    @property
    def service(self) -> ImageService:
        if self._service is None:
            raise RuntimeError("the gateway has not started (no HTTP session yet)")
        return self._service

    def start(self, service: ImageService) -> None:
        self._service = service
