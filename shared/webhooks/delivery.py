"""Sending one customer webhook delivery: Standard Webhooks signing and a bounded POST.

The signature (https://www.standardwebhooks.com) is `v1,` and the base64 HMAC-SHA256, keyed
with the secret's base64 part, of `<webhook-id>.<webhook-timestamp>.<body>`.

What a receiver cannot do here: hold a worker (connecting gets `CONNECT_SECONDS`, the whole
exchange `TOTAL_SECONDS`, every socket operation only the time left; name resolution, which
cannot be interrupted, is bounded by the task's time limit), exhaust its memory (at most
`MAX_RESPONSE_BYTES` of the answer is read), or lead it to an internal address (the host is
resolved once, every address checked by the policy, and the connection goes to exactly
those; redirects are not followed: a receiver answers 2xx itself).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import httpcore
import httpx

from shared.media.fetch import connection_failure, pinned_exchange
from shared.media.url_policy import AddressPolicy, resolve

CONNECT_SECONDS = 5.0
TOTAL_SECONDS = 15.0
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = b"naive-video-webhooks"
# Answers worth trying again (Standard Webhooks: 5xx, and 408 and 429 are transient).
RETRY_STATUSES = frozenset({408, 429})
REFUSED_ADDRESS = "the URL leads to a private, loopback or otherwise non-public address"
# Told apart from a connection that failed: the fix is in the customer's DNS, not at a server.
UNRESOLVED = "the host name did not resolve (DNS)"


class _Refused(Exception):
    """The receiver's host resolves to an address the policy refuses."""


class _Unresolved(Exception):
    """The receiver's host name has no address (DNS answered none, or could not answer)."""


@dataclass(frozen=True)
class Attempt:
    """What one POST found: the receiver's status, or why there was none."""

    status_code: int | None
    error: str | None
    latency_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """Worth another attempt: no answer (timeout, connection, DNS), a 5xx, a 408 or a
        429."""
        if self.status_code is None:
            return self.error != REFUSED_ADDRESS
        return self.status_code >= 500 or self.status_code in RETRY_STATUSES


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def post(
    url: str,
    *,
    webhook_id: str,
    secret: str,
    body: bytes,
    allow_address: AddressPolicy,
    timeout: float = TOTAL_SECONDS,
) -> Attempt:
    """POST the signed `body` to `url` once; `timeout` bounds the whole exchange."""
    started = time.monotonic()
    deadline = started + timeout
    timestamp = int(time.time())
    headers = [
        (b"Content-Type", b"application/json"),
        (b"User-Agent", USER_AGENT),
        (b"webhook-id", webhook_id.encode()),
        (b"webhook-timestamp", str(timestamp).encode()),
        (b"webhook-signature", signature(secret, webhook_id, timestamp, body).encode()),
    ]
    status: int | None = None
    error: str | None = None
    try:
        status = _post(url, headers, body, allow_address, deadline, started + CONNECT_SECONDS)
    except httpcore.TimeoutException:
        error = "timed out"
    except _Unresolved:
        error = UNRESOLVED
    except (httpcore.NetworkError, OSError, UnicodeError) as exc:
        error = connection_failure(exc)
    except httpcore.ProtocolError:
        error = "the answer is not valid HTTP"
    except _Refused:
        error = REFUSED_ADDRESS
    latency_ms = round((time.monotonic() - started) * 1000)
    return Attempt(status_code=status, error=error, latency_ms=latency_ms)


def _post(
    url: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    allow_address: AddressPolicy,
    deadline: float,
    connect_deadline: float,
) -> int:
    target = httpx.URL(url)
    try:
        addresses = resolve(target.host)
    except (OSError, UnicodeError):
        raise _Unresolved from None
    if not addresses or not all(allow_address(address) for address in addresses):
        raise _Refused
    with pinned_exchange(
        "POST",
        target,
        addresses,
        headers=headers,
        deadline=deadline,
        connect_deadline=connect_deadline,
        content=body,
    ) as response:
        read = 0
        for chunk in response.iter_stream():  # read, up to the cap, so the exchange ends
            read += len(chunk)
            if read >= MAX_RESPONSE_BYTES:
                break
        return response.status
