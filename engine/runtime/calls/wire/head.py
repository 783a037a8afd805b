"""The bytes of one HTTP/1.1 request to an upstream.

Header names and values come from provider files and from what they render (prompts, keys);
a line break in either would let a value start a header or a request of its own, so a request
with one is refused, never sent (aiohttp's client refuses them too)."""

from __future__ import annotations

from collections.abc import Mapping

from yarl import URL

from .connection import WireError

# What aiohttp's client sent by default, kept so upstreams see the same request.
_DEFAULTS = (("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"))
_SET_BY_CLIENT = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_JOIN_BELOW = 64 * 1024  # a larger body is written after the head, not copied onto it


def encode_request(
    method: str, url: URL, headers: Mapping[str, str], body: bytes | None, user_agent: str
) -> bytes | list[bytes]:
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1", f"Host: {url.host_port_subcomponent}"]
    given = set()
    for name, value in headers.items():
        lower = name.lower()
        if lower in _SET_BY_CLIENT:
            continue  # framing is this client's, never a provider file's
        given.add(lower)
        lines.append(f"{name}: {value}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {user_agent}")
    for name, value in _DEFAULTS:
        if name.lower() not in given:
            lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body) if body is not None else 0}")
    text = "\r\n".join(lines)
    # each line above adds one line break: any other is a header's own
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        raise WireError("a request header holds a line break")
    if "\0" in text:
        raise WireError("a request header holds a NUL character")
    head = (text + "\r\n\r\n").encode("utf-8", "surrogateescape")
    if body is None or not body:
        return head
    if len(body) < _JOIN_BELOW:
        return head + body
    return [head, body]
