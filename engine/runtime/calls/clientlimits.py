"""What every HTTP client session of the gateway (upstream calls, result and input downloads)
accepts from the other side, beyond aiohttp's defaults.

- `read_bufsize`: small, so a request waiting for a large-body slot leaves its answer in the
  socket (engine/runtime/lifecycle/bodygate.py). No line limit depends on it: the SSE reader
  splits lines itself (sse.py).
- header lines: aiohttp refuses a response header over 8 KiB; providers and CDNs send longer
  ones (signed `Location` URLs, trace and cookie headers), so the bound is 64 KiB."""

from __future__ import annotations

from typing import TypedDict

from ..lifecycle.bodygate import READ_BUFFER

MAX_HEADER_LINE = 64 * 1024


class ClientLimits(TypedDict):
    read_bufsize: int
    max_line_size: int
    max_field_size: int


def client_limits() -> ClientLimits:
    """Keyword arguments for `aiohttp.ClientSession`."""
    return {
        "read_bufsize": READ_BUFFER,
        "max_line_size": MAX_HEADER_LINE,
        "max_field_size": MAX_HEADER_LINE,
    }
