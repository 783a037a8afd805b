"""Long JSON strings (base64 images) kept as slices of the upstream's body.

Parsing a 1.5 MB `b64_json` answer makes a 1.5 MB str, and writing it back makes a third
copy; with dozens in flight, those short-lived big blocks are what fragments the heap. Here a
long string without escapes stays in the body it arrived in: the parsed tree holds a `RawText`
(a view of those bytes), and `dumps` writes the view back out between the JSON around it.
Because such a string has no escapes, its JSON text is its value, byte for byte.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from .jsonbytes import sized

MIN_LENGTH = 64 * 1024  # shorter strings are parsed as usual
MAX_STRINGS = 4096  # a body of many strings is parsed as usual (the scan would cost more)
# In the reduced document each long string becomes this marker; the token is per process,
# so an upstream cannot send a marker of its own.
_MARK = f"pixgate-raw-{secrets.token_hex(8)}-"
_MARK_BYTES = _MARK.encode()
_MARK_SPLIT = re.compile(rb'"' + re.escape(_MARK_BYTES) + rb'(\d+)"')


class RawText:
    """A JSON string's text, left in the buffer it arrived in. `str()` makes a real string
    (a copy), so code that does not know this type still gets the right value."""

    __slots__ = ("view",)

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def __len__(self) -> int:
        return self.view.nbytes

    def __str__(self) -> str:
        return str(self.view, "utf-8")

    def __repr__(self) -> str:
        return f"<{self.view.nbytes} bytes of upstream text>"

    def startswith(self, prefix: bytes) -> bool:
        return self.view[: len(prefix)] == prefix

    def head(self, size: int) -> bytes:
        return self.view[:size].tobytes()

    def tail_after(self, offset: int) -> RawText:
        return RawText(self.view[offset:])

    def strip(self) -> RawText:
        """Without leading or trailing spaces (the only whitespace JSON leaves unescaped)."""
        view = self.view
        start, end = 0, view.nbytes
        while start < end and view[start] == 0x20:
            start += 1
        while end > start and view[end - 1] == 0x20:
            end -= 1
        return self if (start, end) == (0, view.nbytes) else RawText(view[start:end])


def loads(raw: bytes | bytearray) -> Any:
    """orjson.loads, with every string of MIN_LENGTH or more bytes and no escapes as a
    RawText over `raw` (which must not change afterwards)."""
    spans = _long_strings(raw) if len(raw) >= MIN_LENGTH else None
    if not spans:
        return orjson.loads(raw)
    view = memoryview(raw)
    parts: list[bytes | memoryview] = []
    start = 0
    for i, (first, end) in enumerate(spans):
        parts += (view[start:first], _MARK_BYTES, str(i).encode())
        start = end
    parts.append(view[start:])
    tree = orjson.loads(b"".join(parts))
    texts = [RawText(view[first:end]) for first, end in spans]
    return _put_back(tree, texts)


def _long_strings(raw: bytes | bytearray) -> list[tuple[int, int]] | None:
    """(first, end) byte offsets of each long string's text, between its quotes; None when
    the body has too many strings to be worth it. Outside a string every `"` opens one, so
    walking quote to closing quote visits every string; a string with a backslash has
    escapes and is left to orjson."""
    spans: list[tuple[int, int]] = []
    find = raw.find
    pos = 0
    for _ in range(MAX_STRINGS):
        opening = find(b'"', pos)
        if opening < 0:
            return spans
        closing = find(b'"', opening + 1)
        backslash = find(b"\\", opening + 1, closing) if closing > 0 else -1
        if backslash >= 0:
            while closing > 0 and _escaped(raw, closing):
                closing = find(b'"', closing + 1)
        if closing < 0:
            return spans  # unterminated: orjson reports the malformed body
        if closing - opening - 1 >= MIN_LENGTH and backslash < 0:
            spans.append((opening + 1, closing))
        pos = closing + 1
    return None


def _escaped(raw: bytes | bytearray, quote: int) -> bool:
    count = 0
    while raw[quote - 1 - count] == 0x5C:  # backslash
        count += 1
    return count % 2 == 1


def _put_back(node: Any, texts: list[RawText]) -> Any:
    if isinstance(node, str):
        if node.startswith(_MARK):
            index = node[len(_MARK) :]
            if index.isdigit() and int(index) < len(texts):
                return texts[int(index)]
        return node
    if isinstance(node, dict):  # a long key is a key: a real string again
        return {_key(k, texts): _put_back(v, texts) for k, v in node.items()}
    if isinstance(node, list):
        return [_put_back(v, texts) for v in node]
    return node


def _key(key: str, texts: list[RawText]) -> str:
    found = _put_back(key, texts) if key.startswith(_MARK) else key
    return str(found)


def plain(node: Any) -> Any:
    """The tree with every RawText made a real string (for values templates use); the very
    same object when it holds none."""
    if isinstance(node, RawText):
        return str(node)
    if isinstance(node, dict):
        items = {k: plain(v) for k, v in node.items()}
        return node if all(items[k] is v for k, v in node.items()) else items
    if isinstance(node, list):
        values = [plain(v) for v in node]
        return node if all(a is b for a, b in zip(values, node, strict=True)) else values
    return node


def dumps(obj: Any) -> bytes | RawBody:
    """orjson.dumps; where `obj` holds RawText, a body that writes their bytes in place."""
    texts: list[RawText] = []

    def default(value: Any) -> str:
        if isinstance(value, RawText):
            texts.append(value)
            return f"{_MARK}{len(texts) - 1}"
        raise TypeError(f"cannot serialise {type(value).__name__}")

    out = orjson.dumps(obj, default=default)
    if not texts:
        return sized(out)
    pieces: list[bytes | memoryview] = []
    start = 0
    for match in _MARK_SPLIT.finditer(out):
        pieces += (out[start : match.start() + 1], texts[int(match.group(1))].view)
        start = match.end() - 1
    pieces.append(out[start:])
    return RawBody(pieces)


class RawBody(Payload):
    """A response body in pieces: the serialised JSON around views of upstream bytes.

    The pieces are dropped once written, or once writing fails: a client that left mid-answer
    leaves the response in a reference cycle (exception, traceback, frame) until the
    collector runs, and its megabytes need not wait with it."""

    def __init__(self, pieces: Iterable[bytes | memoryview]) -> None:
        self._pieces = list(pieces)
        super().__init__(self._pieces, content_type="application/json")
        self._size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in self._pieces)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._pieces).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"".join(self._pieces)

    async def write(self, writer: AbstractStreamWriter) -> None:
        try:
            for piece in self._pieces:
                await writer.write(piece)
        finally:
            self._pieces = []
