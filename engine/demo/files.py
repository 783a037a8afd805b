"""The demo upstream's in-memory LRU of rendered images, handed out under ``/files/``."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from engine.demo.formats import FORMATS


@dataclass(slots=True)
class StoredFile:
    data: bytes
    content_type: str


class FileStore:
    """In-memory LRU of rendered images, bounded by count and total bytes."""

    def __init__(self, max_files: int, max_bytes: int) -> None:
        self.max_files = max(1, max_files)
        self.max_bytes = max(1, max_bytes)
        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._bytes = 0

    def put(self, data: bytes, fmt: str) -> str:
        """Store ``data``; return its file name (content-addressed, so duplicates share one)."""
        name = f"{hashlib.sha256(data).hexdigest()[:32]}.{fmt}"
        if name in self._files:
            self._files.move_to_end(name)
            return name
        self._files[name] = StoredFile(data, FORMATS[fmt])
        self._bytes += len(data)
        while len(self._files) > 1 and (
            len(self._files) > self.max_files or self._bytes > self.max_bytes
        ):
            _, old = self._files.popitem(last=False)
            self._bytes -= len(old.data)
        return name

    def get(self, name: str) -> StoredFile | None:
        stored = self._files.get(name)
        if stored is not None:
            self._files.move_to_end(name)
        return stored

    def __len__(self) -> int:
        return len(self._files)
