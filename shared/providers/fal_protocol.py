"""What we know of fal's wire protocol, without importing fal-client (the API uses this).

Result parsing, error types, and the verification of fal's signed webhook callbacks:
Ed25519 over `request_id \\n user_id \\n timestamp \\n sha256_hex(body)`, with public keys
from fal's JWKS, timestamps within ±300 s.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.providers.base import ProviderError, ProviderResult

# fal's `error_type` of a finished request → our job error code.
ERROR_TYPES = {
    "request_timeout": "provider_timeout",
    "request_cancelled": "cancelled",
}
MAX_CLOCK_SKEW_SECONDS = 300
JWKS_MIN_REFRESH_SECONDS = 5.0


def error_code(error_type: str | None) -> str:
    return ERROR_TYPES.get(error_type or "", "provider_error")


def parse_result(data: Any) -> ProviderResult:
    """The model's output `{"video": {url, content_type, file_size}}`."""
    video = data.get("video") if isinstance(data, dict) else None
    if not isinstance(video, dict) or not video.get("url"):
        raise ProviderError("fal's result has no video")
    return ProviderResult(
        video_url=video["url"],
        content_type=video.get("content_type") or "video/mp4",
        file_size=video.get("file_size"),
    )


class InvalidWebhook(ValueError):
    """A callback we must not act on: unsigned, forged, stale or malformed."""


class Headers(Protocol):
    """Request headers by name (a dict, or a framework's case-insensitive headers)."""

    def __getitem__(self, name: str, /) -> str: ...


class WebhookVerifier:
    """Checks fal's callback signatures against its JWKS, cached per process.

    fal names no key id in a callback, so "an unknown key" is a signature that no cached
    key verifies: then the JWKS is fetched again (at most every few seconds, so forged
    callbacks cannot turn us into a JWKS fetching loop) and the check repeated.
    """

    def __init__(self, jwks_url: str) -> None:
        self.jwks_url = jwks_url
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at = 0.0
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
        if self._verifies(signature, message, self._cached_keys()):
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

    def _cached_keys(self) -> list[Ed25519PublicKey]:
        return self._keys or self._refreshed_keys()

    def _refreshed_keys(self) -> list[Ed25519PublicKey]:
        with self._lock:
            if time.monotonic() - self._fetched_at < JWKS_MIN_REFRESH_SECONDS and self._keys:
                return self._keys
            self._fetched_at = time.monotonic()
            try:
                response = httpx.get(self.jwks_url, timeout=10)
                response.raise_for_status()
                self._keys = [
                    _public_key(jwk)
                    for jwk in response.json().get("keys", [])
                    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"
                ]
            except (httpx.HTTPError, ValueError):
                pass  # keep the keys we have; the sender retries
            return self._keys


def _public_key(jwk: Mapping[str, str]) -> Ed25519PublicKey:
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)
