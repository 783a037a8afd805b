"""What one image request carries through the runtime, and what it comes back with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..dsl.sizes import Size
from .calls.checkpoint import Journal
from .calls.executor import ProgressFn
from .calls.waitclock import WaitClock
from .images.results import ClientItem
from .routing.failures import UpstreamFailure


class NoUpstream(Exception):
    """Nothing can serve this request (all targets skipped); `status` says why in HTTP terms."""

    def __init__(self, message: str, status: int = 503, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


@dataclass(slots=True)
class Outcome:
    data: list[ClientItem]
    route: str
    provider: str
    model: str
    attempts: int
    failed: int = 0
    revised_prompt: str | None = None
    usage: Any = None
    size: Size | None = None
    size_adjusted: bool = False
    cost_usd: float | None = None  # None: the model has no price


@dataclass(slots=True)
class StreamImage:
    """An image for a streaming client, already base64."""

    b64_json: str
    index: int = 0  # a preview: the upstream's partial index; a final image: its position
    usage: Any = None  # what the upstream said about this image's cost, when it said so


StreamFn = Callable[[StreamImage], None]


@dataclass(slots=True)
class RequestInfo:
    request_id: str
    public_url: str
    self_url: str
    on_progress: ProgressFn | None = None
    relay: tuple[str, str] | None = None  # (provider id, the client's own key): relay mode
    client: str | None = None  # the clients.yaml name of the caller, when it has one
    attempts: int = 0
    failures: list[UpstreamFailure] = field(default_factory=list)
    # Streaming clients: with `on_image` set, every final image goes to it (base64) as soon as
    # it is known, and `Outcome.data` holds the same items; `on_partial` gets previews.
    on_partial: StreamFn | None = None
    on_image: StreamFn | None = None
    partial_images: int | None = None  # the client's `partial_images` (templates read it)
    delivered: int = 0  # final images handed to on_image; after the first, no failover
    clock: WaitClock = field(default_factory=WaitClock)
    journal: Journal | None = None  # an async job's checkpoints (engine/jobs/)

    @property
    def streaming(self) -> bool:
        return self.on_image is not None
