"""Gallery thumbnails: stored images resized on the server with Pillow (off the event loop)
and kept in a small in-memory cache, so the panel never downloads full-size images to list
them."""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict

SIDE = 256
MAX_SOURCE = 50 * 1024 * 1024  # larger stored files get no thumbnail
CACHE_BYTES = 32 * 1024 * 1024


def render(data: bytes) -> bytes:
    """A WebP thumbnail; OSError or ValueError when Pillow cannot (or may not) decode `data`."""
    from ..pillow import Image  # loaded on the first thumbnail, not at start

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.thumbnail((SIDE, SIDE))
            out = io.BytesIO()
            rgb = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
            rgb.save(out, "WEBP", quality=80)
            return out.getvalue()
    except Image.DecompressionBombError as exc:
        raise ValueError(str(exc)) from None


class Thumbnails:
    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, name: str) -> bytes | None:
        thumb = self._cache.get(name)
        if thumb is not None:
            self._cache.move_to_end(name)
        return thumb

    async def make(self, name: str, data: bytes) -> bytes:
        thumb = await asyncio.to_thread(render, data)
        self._cache[name] = thumb
        self._size += len(thumb)
        while self._size > self.budget and self._cache:
            _, old = self._cache.popitem(last=False)
            self._size -= len(old)
        return thumb

    def forget(self, names: list[str]) -> None:
        for name in names:
            old = self._cache.pop(name, None)
            if old is not None:
                self._size -= len(old)
