"""Per-key rate limiting (flask-limiter), counted in Redis so every API replica agrees.

The key is a hash of the caller's API key (the IP address for unauthenticated calls);
a breach answers 429 `rate_limited` with `Retry-After`. If the counter store is down
the limiter fails open: an outage of Redis must not take the API down with it.
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, Flask, request
from flask_limiter import Limiter

from services.api import context
from shared.config import Settings


def _caller() -> str:
    key = context.bearer_key()
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return "ip:" + (request.remote_addr or "unknown")


def init_app(app: Flask, settings: Settings, *, exempt: list[Blueprint]) -> Limiter:
    limiter = Limiter(
        key_func=_caller,
        app=app,
        default_limits=[settings.rate_limit],
        storage_uri=settings.rate_limit_storage_url,
        headers_enabled=True,
        swallow_errors=True,
        key_prefix="naive",
    )
    for blueprint in exempt:
        limiter.exempt(blueprint)
    return limiter
