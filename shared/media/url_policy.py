"""Which source URLs we agree to fetch: public http(s) hosts and inline data: URLs.

A user-supplied `image_url` whose host resolves to anything but a public unicast address
(loopback, private, link-local, multicast, or an IPv6 form that carries an IPv4 address of
someone else's choosing) is refused (SSRF), unless `ALLOW_PRIVATE_IMAGE_URLS` is set for a
closed development network. `check_fetchable` runs at submit; the fetcher
(shared/media/fetch.py) checks every hop again, redirects included, on the addresses it
resolved, and connects to exactly those.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import unquote_to_bytes, urlparse

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[Address], bool]

# IPv6 ranges that Python 3.11's `is_global` counts as global, though they reach an IPv4
# address that a translator or tunnel picks from the address itself (64:ff9b::7f00:1 is
# 127.0.0.1 behind a NAT64 gateway), or are deprecated local scopes.
_NOT_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "64:ff9b::/96",  # NAT64, RFC 6052
        "64:ff9b:1::/48",  # local-use NAT64, RFC 8215
        "::/96",  # IPv4-compatible (deprecated): ::a.b.c.d
        "::ffff:0:0/96",  # IPv4-mapped: ::ffff:a.b.c.d
        "2002::/16",  # 6to4: tunnels to the IPv4 address in bits 16-47
        "fec0::/10",  # site-local (deprecated)
    )
)


class UnsafeUrl(ValueError):
    """The URL may not be fetched; the message says why, for the client."""


def is_public(address: Address) -> bool:
    """A globally routed unicast address that reaches the very host it names."""
    if not address.is_global or address.is_multicast:
        return False
    return not (
        isinstance(address, ipaddress.IPv6Address)
        and any(address in network for network in _NOT_PUBLIC_V6)
    )


def address_policy(*, allow_private: bool) -> AddressPolicy:
    """The addresses a fetch may connect to: public ones, or any on a closed network."""
    return (lambda _address: True) if allow_private else is_public


def resolve(host: str) -> list[Address]:
    """Every address of `host` (a name or an IP literal), in the resolver's order.

    Raises OSError (socket.gaierror) or UnicodeError when the name does not resolve."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def check_fetchable(url: str, *, allow_private: bool) -> None:
    """Refuse, at submit, a URL that can never be fetched or that names a non-public address
    now. A host that does not resolve here is left to the fetcher, which will fail on it."""
    try:
        parsed = urlparse(url)
        hostname = parsed.hostname
    except ValueError:
        raise UnsafeUrl("is not a valid URL") from None
    if parsed.scheme == "data":
        _check_data_image(url)
        return
    if parsed.scheme not in ("http", "https") or not hostname:
        raise UnsafeUrl("must be an https or http URL, or a data: URL")
    if not _is_host_name(hostname):
        raise UnsafeUrl("has a host name that DNS cannot carry")
    try:
        port = parsed.port
    except ValueError:  # not a number, or past 65535
        port = 0
    if port == 0:
        raise UnsafeUrl("has a port that is not one of 1 to 65535")
    if allow_private:
        return
    try:
        addresses = resolve(hostname)
    except (OSError, UnicodeError):
        return
    if not all(is_public(address) for address in addresses):
        raise UnsafeUrl("points at a private, loopback or otherwise non-public address")


# The formats the fetcher decodes (shared/media/fetch.py), by their first bytes.
_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(start: bytes) -> str | None:
    """The media type of an image the service takes (JPEG, PNG, WebP, GIF) from its first
    bytes (12 are enough), or None for anything else."""
    if start[:4] == b"RIFF" and start[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _IMAGE_SIGNATURES if start.startswith(magic)), None)


def _check_data_image(url: str) -> None:
    """A data: URL carries its bytes: one that holds no JPEG, PNG, WebP or GIF can never be
    rendered, so it is refused at submit rather than failing the job later. (Decoding the
    image itself, and its size limits, stay the fetcher's.)"""
    header, comma, payload = url[len("data:") :].partition(",")
    if not comma:
        raise UnsafeUrl("is a data: URL without its ',' and data")
    if header.lower().endswith(";base64"):
        try:
            start = base64.b64decode(payload[:64], validate=True)  # a whole number of quads
        except (binascii.Error, ValueError):
            raise UnsafeUrl("is a data: URL whose base64 is not valid") from None
    else:
        start = unquote_to_bytes(payload[:64])
    if image_type(start) is None:
        raise UnsafeUrl("is a data: URL that holds no JPEG, PNG, WebP or GIF image")


def _is_host_name(hostname: str) -> bool:
    """A name DNS can carry: labels of 1–63 octets (IDNA-encoded), 253 in all. Anything
    else can never be fetched, so it is refused at submit, not found out by the worker."""
    if any(character.isspace() or not character.isprintable() for character in hostname):
        return False  # `exa mple.com`: no resolver looks such a name up
    try:
        encoded = hostname.encode("idna")
    except UnicodeError:
        return False
    return len(encoded) <= 253
