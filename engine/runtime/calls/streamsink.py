"""Images for a streaming client, handed out as base64 as soon as each is known."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..images.results import ClientItem, ResultContext, to_client
from ..request import RequestInfo, StreamImage
from ..routing.failures import UpstreamFailure
from .imagerefs import ImageRef

log = logging.getLogger("pixgate.service")


class StreamSink:
    """Hands one attempt's images to a streaming client as base64, as soon as each is known.

    Conversions (a URL result is downloaded) run at once, side by side; deliveries keep the
    order the images arrived in. At most `n` final images are handed out."""

    def __init__(self, info: RequestInfo, n: int, ctx: ResultContext) -> None:
        self.info = info
        self.n = n
        self.ctx = ctx
        self.accepted = 0
        self.items: list[ClientItem] = []
        self.failures: list[UpstreamFailure] = []
        self._tasks: list[asyncio.Task[None]] = []

    def partial(self, ref: ImageRef, index: int) -> None:
        self._spawn(ref, lambda item: self._emit_partial(item, index), final=False)

    def image(self, ref: ImageRef, usage: Any) -> None:
        if self.accepted >= self.n:
            return
        self.accepted += 1
        self._spawn(ref, lambda item: self._emit_image(item, usage), final=True)

    def _emit_partial(self, item: ClientItem, index: int) -> None:
        if self.info.on_partial is not None:
            self.info.on_partial(StreamImage(str(item["b64_json"]), index))

    def _emit_image(self, item: ClientItem, usage: Any) -> None:
        self.items.append(item)
        self.info.delivered += 1
        if self.info.on_image is not None:
            self.info.on_image(StreamImage(str(item["b64_json"]), len(self.items) - 1, usage))

    def _spawn(self, ref: ImageRef, emit: Callable[[ClientItem], None], *, final: bool) -> None:
        previous = self._tasks[-1] if self._tasks else None
        self._tasks.append(asyncio.create_task(self._deliver(ref, previous, emit, final)))

    async def _deliver(
        self,
        ref: ImageRef,
        previous: asyncio.Task[None] | None,
        emit: Callable[[ClientItem], None],
        final: bool,
    ) -> None:
        item: ClientItem | None = None
        try:
            item = await to_client(ref, "b64_json", False, self.ctx)
        except UpstreamFailure as failure:
            if final:
                self.failures.append(failure)
        except Exception as exc:  # a task's error would otherwise go unseen
            log.exception("streaming an image failed request_id=%s", self.info.request_id)
            if final:
                self.failures.append(UpstreamFailure("upstream", f"result unusable: {exc}"))
        if previous is not None:
            await asyncio.wait({previous})  # keep the order; never raises
        if item is not None:
            emit(item)

    async def finish(self) -> list[ClientItem]:
        """Wait for every delivery; the final items handed out, in order."""
        if self._tasks:
            await asyncio.wait(self._tasks)
        return self.items

    async def flush(self) -> None:
        """Before an attempt's failure is reported: hand out what already arrived (previews
        the upstream sent before it failed), so the client sees them, then the error."""
        if self._tasks:
            await asyncio.wait(self._tasks)

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
