"""fal webhook callbacks: Ed25519 signing, the JWKS that publishes the keys, and delivery.

The signed message is `request_id \\n user_id \\n timestamp \\n sha256_hex(body)` (UTF-8). fal sends
no key id: receivers try each key of the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FAKE_USER_ID = "fake-fal-user"
MAX_ATTEMPTS = 10
MAX_RETRY_SECONDS = 10.0


class WebhookSigner:
    """Ed25519 signing keys, newest first: signs with the newest, publishes all as a JWKS."""

    def __init__(self, keys: list[tuple[str, Ed25519PrivateKey]]) -> None:
        self._keys = list(keys)
        self._lock = threading.Lock()

    @classmethod
    def generate(cls) -> WebhookSigner:
        """A signer with one fresh key."""
        return cls([_new_key()])

    @property
    def kid(self) -> str:
        """The id of the key that signs now."""
        return self._keys[0][0]

    def rotate(self) -> str:
        """Sign with a new key from now on (the old ones stay published); its kid."""
        with self._lock:
            self._keys.insert(0, _new_key())
            return self.kid

    def sign(
        self,
        body: bytes,
        request_id: str,
        *,
        timestamp: int | None = None,
        user_id: str = FAKE_USER_ID,
    ) -> dict[str, str]:
        """The `X-Fal-Webhook-*` headers that authenticate `body` as a callback for `request_id`."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = hashlib.sha256(body).hexdigest()
        message = f"{request_id}\n{user_id}\n{stamp}\n{digest}".encode()
        signature = self._keys[0][1].sign(message)
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": signature.hex(),
        }

    def jwks(self) -> dict[str, Any]:
        """The public keys, newest first, as fal publishes them."""
        return {"keys": [_jwk(kid, key) for kid, key in self._keys]}


def _new_key() -> tuple[str, Ed25519PrivateKey]:
    return f"fake-fal-{uuid.uuid4().hex[:12]}", Ed25519PrivateKey.generate()


def _jwk(kid: str, key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


class WebhookSender:
    """Delivers signed callbacks, retrying failures with a doubling backoff capped at 10 s."""

    def __init__(self, signer: WebhookSigner, retry_seconds: float = 1.0) -> None:
        self.signer = signer
        self.retry_seconds = retry_seconds
        self._stopped = threading.Event()

    def deliver(
        self,
        url: str,
        request_id: str,
        payload: dict[str, Any],
        *,
        copies: int = 1,
        delay: float = 0.0,
        on_attempt: Callable[[bool], None],
    ) -> None:
        """POST `payload` `copies` times, `delay` seconds from now; report each attempt. Blocks."""
        if self._stopped.wait(delay):
            return
        body = json.dumps(payload).encode()
        with httpx.Client(timeout=10.0) as client:
            for _ in range(copies):
                self._deliver_once(client, url, request_id, body, on_attempt)

    def stop(self) -> None:
        """Abandon deliveries still waiting or retrying."""
        self._stopped.set()

    def _deliver_once(
        self,
        client: httpx.Client,
        url: str,
        request_id: str,
        body: bytes,
        on_attempt: Callable[[bool], None],
    ) -> None:
        for attempt in range(MAX_ATTEMPTS):
            if attempt and self._stopped.wait(
                min(self.retry_seconds * 2 ** (attempt - 1), MAX_RETRY_SECONDS)
            ):
                return
            headers = {"Content-Type": "application/json", **self.signer.sign(body, request_id)}
            try:
                delivered = client.post(url, content=body, headers=headers).is_success
            except httpx.HTTPError:
                delivered = False
            on_attempt(delivered)
            if delivered:
                return
