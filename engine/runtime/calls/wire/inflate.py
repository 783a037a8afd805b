"""Content-Encoding of an upstream answer: gzip and deflate, inflated in bounded pieces.

The gateway asks for `gzip, deflate` only. A few kilobytes of gzip can inflate to gigabytes,
so nothing inflates a whole chunk at once: `Inflater.take` returns at most `PIECE` bytes and
keeps the rest of its input, and the connection asks for more only while its reader is below
its high-water mark (flow control then holds the rest in the socket)."""

from __future__ import annotations

import zlib

PIECE = 256 * 1024


class EncodingError(Exception):
    """The answer's Content-Encoding is unknown, or its data is corrupt."""


class Inflater:
    __slots__ = ("_fed", "_pending", "_zlib", "finished")

    def __init__(self, encoding: str) -> None:
        if encoding == "gzip" or encoding == "x-gzip":
            self._zlib: zlib._Decompress | None = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = None  # zlib-wrapped or raw: decided by the first bytes
        else:
            raise EncodingError(f"unsupported Content-Encoding {encoding[:40]!r}")
        self._pending = b""
        self._fed = False
        self.finished = False

    def feed(self, data: bytes) -> None:
        self._fed = True
        self._pending = self._pending + data if self._pending else data

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def take(self) -> bytes:
        """Up to PIECE inflated bytes of what was fed (b"" when it needs more input)."""
        data = self._pending
        if not data:
            return b""
        inflater = self._zlib
        if inflater is None:
            # RFC 9110 deflate is zlib-wrapped; some servers send raw deflate anyway
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            bits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
            inflater = self._zlib = zlib.decompressobj(bits)
        try:
            out = inflater.decompress(data, PIECE)
        except zlib.error:
            raise EncodingError("the upstream's compressed answer is corrupt") from None
        self._pending = inflater.unconsumed_tail
        if inflater.eof:
            self.finished = True
            self._pending = b""  # bytes after the end of the compressed stream are ignored
        return out

    def check_complete(self) -> None:
        """At the end of the body: a compressed stream cut short is an error."""
        if self._fed and (self._zlib is None or not self._zlib.eof):
            raise EncodingError("the upstream's compressed answer ended early")
