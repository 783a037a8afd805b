"""Local-disk storage for images served at /files/<name> (the embedded default)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import BinaryIO

from .imagetypes import extension

_NAME = re.compile(r"^[A-Za-z0-9_-]{16,64}\.(png|jpg|webp|gif|bin)$")


class LocalStorage:
    """Files named by an unguessable token, so a URL is its own capability, like a signed URL."""

    def __init__(self, directory: str | os.PathLike[str], ttl: float = 24 * 3600) -> None:
        self.directory = Path(directory)
        self.ttl = ttl

    async def save(self, data: bytes, mime: str) -> str:
        name = f"{secrets.token_urlsafe(18)}.{extension(mime)}"
        await asyncio.to_thread(self._write, name, data)
        return name

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.directory / name)

    def path(self, name: str) -> Path | None:
        """The file for a public name, or None (also for names that are not ours, and for a
        symlink: lstat, so a link planted under a file id never points the server elsewhere)."""
        if not _NAME.match(name):
            return None
        path = self.directory / name
        try:
            return path if stat.S_ISREG(os.lstat(path).st_mode) else None
        except OSError:
            return None

    def open(self, name: str) -> BinaryIO | None:
        """The open file for a public name, or None. O_NOFOLLOW: a symlink is refused at open
        time, so swapping one in after a check cannot redirect the read. Blocking: call in a
        thread."""
        if not _NAME.match(name):
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

    async def read(self, name: str) -> bytes | None:
        def read() -> bytes | None:
            file = self.open(name)
            if file is None:
                return None
            with file:
                return file.read()

        return await asyncio.to_thread(read)

    def sweep(self) -> int:
        """Delete files older than the TTL; returns how many. Runs in a thread."""
        if not self.directory.is_dir():
            return 0
        cutoff = time.time() - self.ttl
        removed = 0
        for entry in os.scandir(self.directory):
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
