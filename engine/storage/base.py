"""The storage interface every backend implements, and the names objects get."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..runtime.images.imagetypes import extension

# A public name: an id and an extension. The id is the only thing a client names, it is
# matched whole by this pattern, and it never reaches a path or key any other way.
_NAME = re.compile(r"^[A-Za-z0-9_-]{16,64}\.(png|jpg|webp|gif|bin)$")
_TIME_SPAN = 10**13  # milliseconds, until the year 2286

Meta = dict[str, Any]


def is_name(name: str) -> bool:
    return _NAME.match(name) is not None


def new_name(mime: str, now: float | None = None) -> str:
    """An unguessable name (144 random bits) that sorts newest first: it starts with the
    time counted down, so a plain lexical listing (S3's, a directory's) is a gallery."""
    countdown = _TIME_SPAN - int((time.time() if now is None else now) * 1000)
    return f"{countdown:013d}{secrets.token_urlsafe(18)}.{extension(mime)}"


class StorageError(Exception):
    """The backend failed (unreachable, refused, misconfigured). The message names the cause
    and never carries credentials."""


class NotSatisfiable(Exception):
    """The requested byte range lies outside the object."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable (size {size})")
        self.size = size


@dataclass(frozen=True, slots=True)
class ByteRange:
    """One `bytes=` range: start-end, start- (to the end) or -suffix (the last n bytes)."""

    start: int | None
    end: int | None

    def resolve(self, size: int) -> tuple[int, int]:
        """First and last byte offsets for an object of `size` bytes."""
        if self.start is None:
            length = min(self.end or 0, size)
            if length <= 0:
                raise NotSatisfiable(size)
            return size - length, size - 1
        if self.start >= size:
            raise NotSatisfiable(size)
        last = size - 1 if self.end is None else min(self.end, size - 1)
        return self.start, last

    @property
    def header(self) -> str:
        start = "" if self.start is None else self.start
        return f"bytes={start}-{'' if self.end is None else self.end}"


@dataclass(slots=True)
class Opened:
    """An object being read: its size, validators and the bytes of the requested range."""

    size: int  # the whole object
    etag: str  # quoted, as in HTTP
    mime: str
    first: int = 0
    last: int = -1  # inclusive; -1: the whole object
    not_modified: bool = False  # If-None-Match matched: no body follows
    chunks: AsyncIterator[bytes] | None = None
    close: Callable[[], Awaitable[None]] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return (self.size - 1 if self.last < 0 else self.last) - self.first + 1

    @property
    def partial(self) -> bool:
        return self.first > 0 or (self.last >= 0 and self.last < self.size - 1)


class Storage(Protocol):
    """What the runtime may ask of a backend. Names come from `new_name` (or were checked
    with `is_name`) before they reach any method."""

    kind: str

    async def put(self, name: str, data: bytes, mime: str, meta: Meta) -> None: ...

    async def open(
        self, name: str, byte_range: ByteRange | None = None, if_none_match: str | None = None
    ) -> Opened | None: ...

    async def read(self, name: str, limit: int) -> bytes | None: ...

    async def meta(self, name: str) -> Meta | None: ...

    async def page(self, cursor: str | None, limit: int) -> tuple[list[Meta], str | None]:
        """Metadata newest first; the cursor continues after the last item returned."""
        ...

    async def delete(self, names: list[str]) -> list[str]: ...

    async def direct_url(self, name: str) -> str | None:
        """A URL clients fetch from the store itself (public or presigned), or None: serve
        it through the gateway's /files."""
        ...

    async def sweep(self, ttl: float) -> int: ...

    async def check(self) -> None:
        """Raise StorageError naming the cause when the store is not usable."""
        ...

    async def close(self) -> None: ...
