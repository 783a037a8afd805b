"""Local-disk storage (the embedded default, and the S3 backend's fallback).

Images are `<dir>/<name>`, metadata `<dir>/.meta/<name>.json`. A file is opened with
O_NOFOLLOW and must be a regular file, so a symlink planted under an id never points the
server elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from .base import ByteRange, Meta, Opened, is_name

CHUNK = 256 * 1024
MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}


def mime_of(name: str) -> str:
    return MIME_BY_EXTENSION.get(name.rsplit(".", 1)[-1], "application/octet-stream")


class LocalStorage:
    kind = "local"

    def __init__(self, directory: str | os.PathLike[str], public_base: str | None = None) -> None:
        self.directory = Path(directory)
        self.meta_dir = self.directory / ".meta"
        self.public_base = public_base

    async def put(self, name: str, data: bytes, mime: str, meta: Meta) -> None:
        await asyncio.to_thread(self._write, name, data, meta)

    def _write(self, name: str, data: bytes, meta: Meta) -> None:
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        for path, body in ((self.meta_dir / f"{name}.json", json.dumps(meta).encode()),
                           (self.directory / name, data)):  # fmt: skip
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(body)
            tmp.replace(path)

    def open_file(self, name: str) -> BinaryIO | None:
        """The open file for a public name, or None. Blocking: call in a thread."""
        if not is_name(name):
            return None
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.directory / name, flags)
        except OSError:  # missing, or a symlink (ELOOP)
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device would block or leak
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")

    def has(self, name: str) -> bool:
        try:
            return is_name(name) and stat.S_ISREG(os.lstat(self.directory / name).st_mode)
        except OSError:
            return False

    async def open(
        self, name: str, byte_range: ByteRange | None = None, if_none_match: str | None = None
    ) -> Opened | None:
        file = await asyncio.to_thread(self.open_file, name)
        if file is None:
            return None
        try:
            st = os.fstat(file.fileno())
            etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
            opened = Opened(size=st.st_size, etag=etag, mime=mime_of(name))
            if if_none_match is not None and matches(etag, if_none_match):
                opened.not_modified = True
                file.close()
                return opened
            if byte_range is not None:
                opened.first, opened.last = byte_range.resolve(st.st_size)
        except BaseException:
            file.close()
            raise

        async def close() -> None:
            file.close()

        opened.chunks = _chunks(file, opened.first, opened.length)
        opened.close = close
        return opened

    async def read(self, name: str, limit: int) -> bytes | None:
        def read() -> bytes | None:
            file = self.open_file(name)
            if file is None:
                return None
            with file:
                return file.read(limit + 1)

        data = await asyncio.to_thread(read)
        return None if data is None or len(data) > limit else data

    async def meta(self, name: str) -> Meta | None:
        return await asyncio.to_thread(self._meta, name) if is_name(name) else None

    def _meta(self, name: str) -> Meta | None:
        try:
            st = os.lstat(self.directory / name)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        meta: Meta = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((self.meta_dir / f"{name}.json").read_bytes())
        meta.setdefault("created", int(st.st_mtime))
        return {**meta, "id": name, "bytes": st.st_size}

    async def page(self, cursor: str | None, limit: int) -> tuple[list[Meta], str | None]:
        def page() -> tuple[list[Meta], str | None]:
            names = sorted(n for n in self.names() if cursor is None or n > cursor)
            items = [m for m in (self._meta(n) for n in names[:limit]) if m is not None]
            return items, (names[limit - 1] if len(names) > limit else None)

        return await asyncio.to_thread(page)

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return [e.name for e in os.scandir(self.directory) if is_name(e.name)]

    async def delete(self, names: list[str]) -> list[str]:
        def delete() -> list[str]:
            gone = []
            for name in filter(is_name, names):
                try:
                    os.unlink(self.directory / name)
                    gone.append(name)
                except FileNotFoundError:
                    pass
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.meta_dir / f"{name}.json")
            return gone

        return await asyncio.to_thread(delete)

    async def direct_url(self, name: str) -> str | None:
        return f"{self.public_base}/{name}" if self.public_base else None

    async def sweep(self, ttl: float) -> int:
        return await asyncio.to_thread(self.sweep_now, ttl)

    def sweep_now(self, ttl: float) -> int:
        """Delete files older than `ttl` seconds; returns how many images went."""
        cutoff = time.time() - ttl
        removed = 0
        for folder in (self.directory, self.meta_dir):
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += folder == self.directory
                except FileNotFoundError:
                    continue
        return removed

    async def check(self) -> None:
        return None  # the directory is made on the first write

    async def close(self) -> None:
        return None


def matches(etag: str, if_none_match: str) -> bool:
    """If-None-Match: `*` or a list of tags (weak comparison, as RFC 9110 asks for GET)."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


async def _chunks(file: BinaryIO, first: int, length: int) -> AsyncIterator[bytes]:
    try:
        await asyncio.to_thread(file.seek, first)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(file.read, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        file.close()
