"""Which IP addresses the gateway refuses to connect to when it fetches a URL it was given
(client input images, result URLs, webhooks): anything not public, in any spelling.

Pure: no I/O. `fetch.py` applies it to literal hosts and, after DNS, to every address a name
resolves to."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in order; the first match gives the reason. Loopback is handled separately.
_IPV4_BLOCKED: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("255.255.255.255/32"), "a broadcast address"),
    (_V4("0.0.0.0/8"), "an unspecified address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
    (_V4("192.0.0.0/24"), "a reserved address"),  # IETF protocol assignments
    (_V4("192.0.2.0/24"), "a reserved address"),  # documentation
    (_V4("198.51.100.0/24"), "a reserved address"),  # documentation
    (_V4("203.0.113.0/24"), "a reserved address"),  # documentation
    (_V4("198.18.0.0/15"), "a reserved address"),  # benchmarking
    (_V4("192.88.99.0/24"), "a reserved address"),  # 6to4 relay anycast
)
_IPV4_LOOPBACK = _V4("127.0.0.0/8")

_IPV6_BLOCKED: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("fc00::/7"), "a private (unique local) address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address"),
    (_V6("ff00::/8"), "a multicast address"),
    (_V6("100::/64"), "a reserved address"),  # discard-only
    (_V6("2001:db8::/32"), "a reserved address"),  # documentation
)
_IPV6_MAPPED = _V6("::ffff:0:0/96")
_IPV6_COMPATIBLE = _V6("::/96")
_IPV6_NAT64 = _V6("64:ff9b::/96")


def address_refusal(ip: IPAddress | str, *, allow_loopback: bool = False) -> str | None:
    """Why the gateway must not connect to `ip` ("a private address", ...), or None if it may.

    The reason reads after "<ip> is ". IPv6 forms that embed an IPv4 address (IPv4-mapped,
    IPv4-compatible, 6to4, NAT64, Teredo) are judged by the IPv4 address they reach.
    Raises ValueError for a string that is not an IP address.
    """
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_refusal(ip, allow_loopback)
    if ip.scope_id is not None:  # fe80::1%eth0: judge the address, not the zone
        ip = ipaddress.IPv6Address(ip.packed)
    return _ipv6_refusal(ip, allow_loopback)


def _ipv4_refusal(ip: ipaddress.IPv4Address, allow_loopback: bool) -> str | None:
    if ip in _IPV4_LOOPBACK:
        return None if allow_loopback else "a loopback address"
    for network, reason in _IPV4_BLOCKED:
        if ip in network:
            return reason
    if not ip.is_global:
        return "not a public address"
    return None


def _ipv6_refusal(ip: ipaddress.IPv6Address, allow_loopback: bool) -> str | None:
    if ip == ipaddress.IPv6Address("::"):
        return "an unspecified address"
    if ip == ipaddress.IPv6Address("::1"):
        return None if allow_loopback else "a loopback address"

    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        kind, inner = embedded
        for v4 in inner:
            reason = _ipv4_refusal(v4, allow_loopback)
            if reason is not None:
                return f"{kind} address embedding {v4}, {reason}"
        if kind in ("an IPv4-mapped", "a NAT64"):
            return None  # reaches a public IPv4 address; DNS64 networks depend on this
        if kind == "a Teredo":
            return "a Teredo tunnelling address"
        if kind == "an IPv4-compatible":
            return "a deprecated IPv4-compatible address"
        # 6to4 with a public IPv4 address: judged like any other global address below.

    for network, reason in _IPV6_BLOCKED:
        if ip in network:
            return reason
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(
    ip: ipaddress.IPv6Address,
) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    if ip in _IPV6_MAPPED:
        mapped = ip.ipv4_mapped
        assert mapped is not None
        return "an IPv4-mapped", (mapped,)
    if ip in _IPV6_NAT64:
        return "a NAT64", (ipaddress.IPv4Address(ip.packed[-4:]),)
    if ip in _IPV6_COMPATIBLE:  # ::a.b.c.d (:: and ::1 are handled before)
        return "an IPv4-compatible", (ipaddress.IPv4Address(ip.packed[-4:]),)
    if ip.sixtofour is not None:
        return "a 6to4", (ip.sixtofour,)
    if ip.teredo is not None:
        server, client = ip.teredo
        return "a Teredo", (server, client)
    return None
