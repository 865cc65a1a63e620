"""Where outgoing webhooks may go: public HTTPS endpoints only (SSRF guard), checked when an endpoint is registered
and again before every delivery, on the addresses the host resolves to *now*.

A URL is refused when it is not https, carries credentials, or when any address its host resolves to is not a
public unicast address: loopback, private (RFC 1918, fc00::/7), shared (100.64/10), link-local (169.254/16, where
cloud metadata lives, and fe80::/10), unspecified, multicast, reserved, documentation/benchmark ranges, and the IPv6
forms that embed one of them (::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d; 6to4 and Teredo are refused outright).
Decimal, octal and hex spellings of an IPv4 host ("2130706433", "0177.0.0.1", "0x7f.1") are caught because the
check is on what the resolver returns, not on the text.

DNS rebinding: the delivery connects to the address that was checked (`ResolvedTarget.pinned_url`), with the
original Host header and TLS server name (so the certificate is still verified for the host name); there is no
second lookup between the check and the connect. Redirects are never followed.

Development may deliver to loopback receivers over http (`TargetPolicy.allow_loopback`, from
WEBHOOK_ALLOW_LOOPBACK: on by default outside production, refused in production by Settings.check_production).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from core.settings import Settings

MAX_URL_LENGTH = 500
RESOLVE_TIMEOUT_S = 5.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses (as text) a connection could go to
Resolver = Callable[[str, int], Awaitable[list[str]]]

_DENIED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",
        "::ffff:0:0/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class TargetRefused(Exception):
    """The URL may not receive webhooks. `retryable`: the host did not resolve (it may later); otherwise the URL or
    what it resolves to is not allowed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class TargetPolicy:
    allow_loopback: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetPolicy:
        return cls(allow_loopback=settings.webhook_loopback_allowed)


@dataclass(frozen=True)
class ResolvedTarget:
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, as the Host header and TLS server name
    port: int
    path: str  # path and query
    addresses: tuple[IPAddress, ...]  # every one checked

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"

    def pinned_url(self, address: IPAddress | None = None) -> str:
        """The URL with its host replaced by a checked address: connecting to it needs no DNS."""
        ip = address or self.addresses[0]
        literal = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
        return urlunsplit((self.scheme, f"{literal}:{self.port}", self.path, "", ""))


def is_loopback(ip: IPAddress) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    return any((mapped or ip) in net for net in _LOOPBACK if (mapped or ip).version == net.version)


def address_refusal(ip: IPAddress, policy: TargetPolicy) -> str | None:
    """Why a connection to `ip` is not allowed, or None when it is."""
    if ip.version == 6:
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return address_refusal(mapped, policy)
        if ip in _NAT64:  # an IPv4 address through the NAT64 gateway: public ones only, never loopback
            return address_refusal(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), TargetPolicy(allow_loopback=False))
        if ip.scope_id:
            return "a scoped (link-local) IPv6 address"
    if is_loopback(ip):
        return None if policy.allow_loopback else "a loopback address"
    if (
        any(ip in net for net in _DENIED if net.version == ip.version)
        or not ip.is_global
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip.is_link_local
    ):
        return "a private, link-local, reserved or multicast address"
    return None


def parse_target(url: str) -> tuple[str, str, int, str]:
    """(scheme, ASCII host, port, path+query) of an acceptable URL, before resolution; TargetRefused otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"url must be an https URL of at most {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise TargetRefused("url must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"url is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("url must be an https URL with a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise TargetRefused("url must not contain credentials")
    host = parts.hostname.rstrip(".")
    try:
        host = host.encode("idna").decode("ascii") if not _is_ip_literal(host) else host
    except UnicodeError as exc:
        raise TargetRefused("url has an invalid host name") from exc
    if not host:
        raise TargetRefused("url must be an https URL with a host")
    port = port if port is not None else (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        raise TargetRefused("url has an invalid port")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port, path


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for host (A and AAAA), bounded in time."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S)
    return [str(info[4][0]) for info in infos]


async def resolve_target(url: str, policy: TargetPolicy, resolve: Resolver = system_resolve) -> ResolvedTarget:
    """Check `url` and every address its host resolves to now; the result says where to connect."""
    scheme, host, port, path = parse_target(url)
    try:
        raw = await resolve(host, port)
    except (TimeoutError, OSError, UnicodeError) as exc:
        raise TargetRefused(f"url host {host!r} does not resolve", retryable=True) from exc
    addresses: list[IPAddress] = []
    for text in raw:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError as exc:
            raise TargetRefused(f"url host {host!r} resolves to an invalid address") from exc
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise TargetRefused(f"url host {host!r} does not resolve", retryable=True)
    for ip in addresses:
        why = address_refusal(ip, policy)
        if why is not None:
            raise TargetRefused(f"url host {host!r} resolves to {why}; webhooks go to public endpoints only")
    if scheme != "https" and not all(is_loopback(ip) for ip in addresses):
        raise TargetRefused("url must use https (http only for a loopback receiver in development)")
    return ResolvedTarget(scheme, host, port, path, tuple(addresses))
