"""What we know of fal's wire protocol, without importing fal-client (the API uses this).

Result parsing, how a request that ended without output maps to our error, the callbacks'
shapes, and the verification of fal's signed webhook callbacks: Ed25519 over
`request_id \\n user_id \\n timestamp \\n sha256_hex(body)`, with public keys from fal's
JWKS, timestamps within ±300 s.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.providers.base import CallbackOutcome, ProviderError, ProviderResult

# fal's `error_type` of a finished request → our job error code.
ERROR_TYPES = {
    "request_timeout": "provider_timeout",
    "startup_timeout": "provider_timeout",
    "request_cancelled": "cancelled",
}
# An ERROR callback's `error` names the HTTP status of the result it carries as `payload`.
CALLBACK_STATUS = re.compile(r"status code:?\s*(\d{3})", re.IGNORECASE)
MAX_MESSAGE_CHARS = 500
MAX_CLOCK_SKEW_SECONDS = 300
# At most one JWKS fetch per this many seconds, whether keys are cached or not, so forged
# callbacks cannot turn us into a JWKS fetching loop.
JWKS_MIN_REFRESH_SECONDS = 5.0
# A JWKS fetch's whole budget (connect, headers, body), and the longest any callback waits
# for a fetch under way: a stalling JWKS host costs each callback this much at most.
JWKS_DEADLINE_SECONDS = 2.0
JWKS_MAX_BYTES = 64 * 1024
# The result's header naming what fal bills for the request, in the unit its price is
# quoted in (the platform API's `/models/pricing` `unit`): cost = units × unit price.
BILLABLE_UNITS_HEADER = "x-fal-billable-units"


def billable_units(value: str | None) -> float | None:
    """The `x-fal-billable-units` header as a number; None when absent or not a finite,
    non-negative number (a cost we cannot read is unknown, never a reason to fail a
    delivered video)."""
    try:
        units = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return units if math.isfinite(units) and units >= 0 else None


def parse_result(data: Any, units: float | None = None) -> ProviderResult:
    """The model's output `{"video": {url, content_type, file_size}}`, with the billable
    `units` its answer's header reported (callbacks carry none)."""
    video = data.get("video") if isinstance(data, dict) else None
    if not isinstance(video, dict) or not isinstance(video.get("url"), str) or not video["url"]:
        raise ProviderError("fal's result has no video")
    size = video.get("file_size")
    return ProviderResult(
        video_url=video["url"],
        content_type=str(video.get("content_type") or "video/mp4"),
        file_size=size if isinstance(size, int) else None,
        billable_units=units,
    )


def request_failure(status_code: int | None, detail: Any, error_type: str | None) -> ProviderError:
    """How a fal request that ended without output ends our job: one mapping, whichever way
    we learn it. Polling reads the result's error answer (its HTTP status, `detail` and
    `error_type`); an ERROR callback carries the same answer as its payload, with the
    status in its `error` ("Invalid status code: 422")."""
    if error_type in ERROR_TYPES:
        text = describe(detail) or "fal ended the request"
        return ProviderError(text, code=ERROR_TYPES[error_type])
    fields = _validation_fields(detail)
    if status_code == 422 or fields:
        text = fields or describe(detail) or "no detail given"
        return ProviderError(f"The model refused the input: {text}", code="invalid_input")
    text = describe(detail)
    if status_code is None:
        return ProviderError(text or "fal failed the request")
    return ProviderError(text or f"fal failed the request (HTTP {status_code})")


def callback_outcome(status: str, payload: Any, error: str | None) -> CallbackOutcome:
    """What a verified callback says: the video, how the request failed, or None when it
    carries no usable video (fal sends `payload: null` with a `payload_error` for output it
    could not serialise): then the queue API has the result, and the job is polled now."""
    if status == "ERROR":
        match = CALLBACK_STATUS.search(error or "")
        details = payload if isinstance(payload, dict) else {}
        detail = details.get("detail") or (None if match else error)
        error_type = details.get("error_type")
        return request_failure(
            int(match.group(1)) if match else None,
            detail,
            error_type if isinstance(error_type, str) else None,
        )
    try:
        return parse_result(payload)
    except ProviderError:
        return None


def describe(detail: Any) -> str:
    """fal's `detail` as text: a string as it is, a validation list as `field: message; …`,
    anything else as JSON (never a Python repr); at most `MAX_MESSAGE_CHARS`."""
    if detail is None or detail == "":
        return ""
    if isinstance(detail, str):
        text = detail.strip()
    else:
        text = _validation_fields(detail) or json.dumps(detail, ensure_ascii=False, default=str)
    return text[:MAX_MESSAGE_CHARS]


def _validation_fields(detail: Any) -> str:
    """fal's 422 `detail` is a list of {loc, msg}: name each field ("" for anything else)."""
    if not isinstance(detail, list) or not detail:
        return ""
    if not all(isinstance(item, dict) and "msg" in item for item in detail):
        return ""
    parts = []
    for item in detail:
        loc = item.get("loc")
        location = [str(part) for part in loc if part != "body"] if isinstance(loc, list) else []
        message = item["msg"] if isinstance(item["msg"], str) else json.dumps(item["msg"])
        parts.append(f"{'.'.join(location) or 'input'}: {message}")
    return "; ".join(parts)


class InvalidWebhook(ValueError):
    """A callback we must not act on: unsigned, forged, stale or malformed."""


class Headers(Protocol):
    """Request headers by name (a dict, or a framework's case-insensitive headers)."""

    def __getitem__(self, name: str, /) -> str: ...


class WebhookVerifier:
    """Checks fal's callback signatures against its JWKS, cached per process.

    fal names no key id in a callback, so "an unknown key" is a signature that no cached
    key verifies: then the JWKS is fetched again and the check repeated. Fetches run one at
    a time in a thread of their own, at most every `JWKS_MIN_REFRESH_SECONDS`, each within
    `JWKS_DEADLINE_SECONDS`; a callback waits for the fetch under way only until that
    deadline, so a stalling JWKS host cannot hold the API's threads.
    """

    def __init__(self, jwks_url: str) -> None:
        self.jwks_url = jwks_url
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at = -JWKS_MIN_REFRESH_SECONDS
        self._fetched = threading.Event()  # set when no fetch is under way
        self._fetched.set()
        self._lock = threading.Lock()

    def verify(self, headers: Headers, body: bytes, *, now: float | None = None) -> str:
        """The callback's request id, or `InvalidWebhook`."""
        now = time.time() if now is None else now
        try:
            request_id = headers["X-Fal-Webhook-Request-Id"]
            user_id = headers["X-Fal-Webhook-User-Id"]
            timestamp = headers["X-Fal-Webhook-Timestamp"]
            signature = bytes.fromhex(headers["X-Fal-Webhook-Signature"])
            sent_at = int(timestamp)
        except (KeyError, ValueError):
            raise InvalidWebhook("missing or malformed signature headers") from None
        if abs(now - sent_at) > MAX_CLOCK_SKEW_SECONDS:
            raise InvalidWebhook("stale timestamp")
        message = "\n".join(
            [request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]
        ).encode()
        if self._verifies(signature, message, self._keys):
            return request_id
        if self._verifies(signature, message, self._refreshed_keys()):
            return request_id
        raise InvalidWebhook("bad signature")

    @staticmethod
    def _verifies(signature: bytes, message: bytes, keys: list[Ed25519PublicKey]) -> bool:
        for key in keys:
            try:
                key.verify(signature, message)
            except InvalidSignature:
                continue
            return True
        return False

    def _refreshed_keys(self) -> list[Ed25519PublicKey]:
        """The keys after a fetch: a new one if none ran lately, else the one under way
        (waited for until its deadline at most), else the keys we have."""
        with self._lock:
            started = time.monotonic()
            if self._fetched.is_set() and started - self._fetched_at >= JWKS_MIN_REFRESH_SECONDS:
                self._fetched_at = started
                self._fetched.clear()
                threading.Thread(target=self._fetch, name="fal-jwks", daemon=True).start()
            deadline = self._fetched_at + JWKS_DEADLINE_SECONDS
        self._fetched.wait(max(0.0, deadline - time.monotonic()))
        return self._keys

    def _fetch(self) -> None:
        deadline = time.monotonic() + JWKS_DEADLINE_SECONDS
        try:
            body = bytearray()
            with httpx.stream("GET", self.jwks_url, timeout=JWKS_DEADLINE_SECONDS) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > JWKS_MAX_BYTES or time.monotonic() > deadline:
                        return  # keep the keys we have; the sender retries
            self._keys = [
                _public_key(jwk)
                for jwk in json.loads(body).get("keys", [])
                if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"
            ]
        except (httpx.HTTPError, ValueError, TypeError, AttributeError, KeyError):
            pass  # keep the keys we have; the sender retries
        finally:
            self._fetched.set()


def _public_key(jwk: Mapping[str, str]) -> Ed25519PublicKey:
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)
