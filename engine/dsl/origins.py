"""Where a provider's key may go: origins (scheme, host, port), compared whole.

A key goes to the provider's `base_url` origin and nowhere else, unless the provider
(`auth.send_to`) or one step (`request.auth: [...]`) lists more. Host names alone are not
enough: `http://api.example` and `https://api.example:8443` are other servers, and so are
127.0.0.1, 127.0.0.2 and localhost.

A pattern is `scheme://host[:port]`, or `host[:port]` meaning https. The host may start with
`*.` for any subdomain (not the domain itself): `https://*.bfl.ai`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class OriginPattern:
    scheme: str
    host: str  # lower case; "*.example.com" matches any subdomain of example.com
    port: int

    def matches(self, origin: Origin) -> bool:
        scheme, host, port = origin
        if scheme != self.scheme or port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host

    def __str__(self) -> str:
        default = DEFAULT_PORTS.get(self.scheme)
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}"


def parse_pattern(text: str) -> OriginPattern:
    """`https://api.example.com`, `api.example.com:8443`, `https://*.bfl.ai`; ValueError if
    it is anything more (a path, a query, credentials) or not http(s)."""
    raw = text.strip()
    if "://" not in raw:
        raw = "https://" + raw
    wildcard = "://*." in raw
    try:
        url = URL(raw.replace("://*.", "://wildcard.", 1) if wildcard else raw)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"'{text}' is not an origin: {exc}") from None
    if url.scheme not in DEFAULT_PORTS:
        raise ValueError(f"'{text}': only http and https origins")
    if not url.host or url.user or url.password or url.query_string or url.fragment:
        raise ValueError(f"'{text}' is not an origin (scheme://host[:port])")
    if url.path not in ("", "/"):
        raise ValueError(f"'{text}' is not an origin: no path allowed")
    host = url.host.lower().rstrip(".")
    if wildcard:
        host = "*" + host[len("wildcard") :]
    return OriginPattern(url.scheme, host, port or DEFAULT_PORTS[url.scheme])


def origin_of(url: URL | str) -> Origin | None:
    """(scheme, host, port) of an absolute http(s) URL, else None."""
    return _origin_of_text(url) if isinstance(url, str) else _origin(url)


@functools.lru_cache(maxsize=256)  # base URLs, compared on every step
def _origin_of_text(url: str) -> Origin | None:
    try:
        return _origin(URL(url))
    except ValueError:
        return None


def _origin(parsed: URL) -> Origin | None:
    try:
        port = parsed.port
    except ValueError:
        return None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
        return None
    return parsed.scheme, parsed.host.lower().rstrip("."), port or DEFAULT_PORTS[parsed.scheme]


def may_receive_key(url: URL | str, base_url: str, extra: Iterable[OriginPattern] = ()) -> bool:
    """Whether a request to `url` may carry the key of a provider at `base_url`."""
    target = origin_of(url)
    if target is None:
        return False
    if target == origin_of(base_url):
        return True
    return any(p.matches(target) for p in extra)
