"""orjson.dumps, with a small document kept in a bytes object of its own size.

orjson writes into a buffer sized for the worst case (4 KiB for the smallest document, eight
bytes a character of a long string) and hands that buffer over as the bytes object it returns,
unshrunk. Such a body can live long: aiohttp's connection keeps the last response (body
included) until the next request or the close, and a request queued behind the upstream
connector keeps its rendered body. 10,000 polling jobs done on keep-alive connections held
about 40 MiB of these buffers for 100-byte answers; copied, each takes its own size.
"""

from __future__ import annotations

from typing import Any

import orjson

# Larger documents stay in orjson's buffer: copying them costs time, and their buffers are
# big enough to be mapped on their own, where only the pages written count.
COPY_UP_TO = 64 * 1024


def dumps(obj: Any, default: Any = None) -> bytes:
    out = orjson.dumps(obj, default=default)
    return sized(out)


def sized(out: bytes) -> bytes:
    """`out` in an object of its own size when it is small (see the module's docstring)."""
    return memoryview(out).tobytes() if len(out) <= COPY_UP_TO else out
