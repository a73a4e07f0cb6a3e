"""Which source URLs we agree to fetch: public http(s) hosts and inline data: URLs.

A user-supplied `image_url` that resolves to a loopback, private, link-local or other
non-public address is refused (SSRF), unless `ALLOW_PRIVATE_IMAGE_URLS` is set for a
closed development network. A host that does not resolve here is left to the fetcher,
which will fail on it; the check runs again right before any fetch.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse


class UnsafeUrl(ValueError):
    """The URL may not be fetched; the message says why, for the client."""


def check_fetchable(url: str, *, allow_private: bool) -> None:
    try:
        parsed = urlparse(url)
        hostname = parsed.hostname
    except ValueError:
        raise UnsafeUrl("is not a valid URL") from None
    if parsed.scheme == "data":
        return
    if parsed.scheme not in ("http", "https") or not hostname:
        raise UnsafeUrl("must be an https or http URL, or a data: URL")
    if not _is_host_name(hostname):
        raise UnsafeUrl("has a host name that DNS cannot carry")
    if allow_private:
        return
    try:
        addresses = {ipaddress.ip_address(hostname)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            return
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    if any(not address.is_global for address in addresses):
        raise UnsafeUrl("points at a private, loopback or otherwise non-public address")


def _is_host_name(hostname: str) -> bool:
    """A name DNS can carry: labels of 1–63 octets (IDNA-encoded), 253 in all. Anything
    else can never be fetched, so it is refused at submit, not found out by the worker."""
    try:
        encoded = hostname.encode("idna")
    except UnicodeError:
        return False
    return len(encoded) <= 253
