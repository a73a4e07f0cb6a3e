"""Rate limits, counted in Redis so every API replica agrees (in the process without Redis).

Each request is checked against two fixed windows in one round trip (a Lua script):
- its caller's, `RATE_LIMIT`: a hash of the API key it sends (its client address when it
  sends none, e.g. a signed media link);
- its client address's failed authentications, `RATE_LIMIT_AUTH_FAILURES`: every answer
  401 (no key, an invented or a revoked one) counts one. Once an address has spent that
  tighter budget, its requests are refused before any database lookup until the window
  ends, so rotating invented `nv_sk_…` keys (each a fresh caller) buys nothing. A key
  that authenticated within its last window still passes: customers behind the same
  address (a NAT, a proxy) are not locked out by someone else's guessing.
Routes with a budget of their own (fal's signed callbacks, which send no key) are counted
per client address in a window of their own instead of `RATE_LIMIT`.
A breach answers 429 `rate_limited` with `Retry-After`; every answer carries the caller's
`X-RateLimit-Limit`, `-Remaining` and `-Reset`. If Redis is down the limiter fails open:
an outage of Redis must not take the API down with it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import redis
from flask import Blueprint, Flask, Response, g, request

from services.api import context
from services.api.errors import error_response
from shared.config import Rate, Settings

log = logging.getLogger(__name__)

# Count the caller's request; read the address's failures and whether the caller's key
# authenticated lately. Returns both counts, the milliseconds left in each window (-2: no
# such window yet) and that mark.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
return {count, redis.call('PTTL', KEYS[1]), failures, redis.call('PTTL', KEYS[2]),
        redis.call('EXISTS', KEYS[1] .. ':ok')}
"""
_FAIL = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@dataclass(frozen=True)
class Window:
    count: int
    reset_in: float  # seconds until the window ends
    trusted: bool = False  # the caller's key authenticated within its last window


class Counters(Protocol):
    def hit(self, caller: str, failures: str, rate: Rate) -> tuple[Window, Window]:
        """Count a request in the window `caller`; both windows as they are now."""

    def fail(self, failures: str, rate: Rate) -> None:
        """Count a failed authentication in the window `failures`."""

    def trust(self, caller: str, rate: Rate) -> None:
        """Mark the caller's key as one that authenticated, for a window."""


class RedisCounters:
    def __init__(self, url: str) -> None:
        # Short timeouts: a Redis that hangs costs each request at most this, then fails open.
        client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self._client = client
        self._hit = client.register_script(_HIT)
        self._fail = client.register_script(_FAIL)

    def hit(self, caller: str, failures: str, rate: Rate) -> tuple[Window, Window]:
        count, ttl, failed, failed_ttl, trusted = self._hit(
            keys=[caller, failures], args=[rate.seconds * 1000]
        )
        mine = Window(count, max(ttl, 0) / 1000, bool(trusted))
        return mine, Window(failed, max(failed_ttl, 0) / 1000)

    def fail(self, failures: str, rate: Rate) -> None:
        self._fail(keys=[failures], args=[rate.seconds * 1000])

    def trust(self, caller: str, rate: Rate) -> None:
        self._client.set(caller + ":ok", 1, ex=rate.seconds)


class MemoryCounters:
    """The same windows in this process: the embedded default, which has no Redis."""

    PRUNE_AT = 10_000  # windows kept before the ended ones are dropped

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float]] = {}  # key → (count, ends at)
        self._lock = threading.Lock()

    def _read(self, key: str, now: float) -> Window:
        count, ends = self._windows.get(key, (0, now))
        return Window(count, ends - now) if ends > now else Window(0, 0.0)

    def _add(self, key: str, rate: Rate, now: float) -> Window:
        if len(self._windows) >= self.PRUNE_AT:
            self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        window = self._read(key, now)
        reset_in = window.reset_in if window.count else rate.seconds
        self._windows[key] = (window.count + 1, now + reset_in)
        return Window(window.count + 1, reset_in)

    def hit(self, caller: str, failures: str, rate: Rate) -> tuple[Window, Window]:
        with self._lock:
            now = time.monotonic()
            mine = self._add(caller, rate, now)
            trusted = self._read(caller + ":ok", now).count > 0
            return Window(mine.count, mine.reset_in, trusted), self._read(failures, now)

    def fail(self, failures: str, rate: Rate) -> None:
        with self._lock:
            self._add(failures, rate, time.monotonic())

    def trust(self, caller: str, rate: Rate) -> None:
        with self._lock:
            self._windows[caller + ":ok"] = (1, time.monotonic() + rate.seconds)


def _keys(own: str | None) -> tuple[str, str]:
    """The caller's window (per address in the window `own` of a route with its own
    budget) and its client address's failures window."""
    address = request.remote_addr or "unknown"
    key = context.bearer_key()
    caller = "key:" + hashlib.sha256(key.encode()).hexdigest()[:32] if key else "ip:" + address
    caller = f"{own}:ip:{address}" if own else caller
    return "naive:rl:" + caller, "naive:rl:fail:" + address


def init_app(
    app: Flask,
    settings: Settings,
    *,
    exempt: list[Blueprint],
    own_budgets: Mapping[Blueprint, Rate] | None = None,
) -> None:
    url = settings.rate_limit_storage_url
    counters: Counters = MemoryCounters() if url == "memory://" else RedisCounters(url)
    rate, failures_rate = settings.rate_limit, settings.rate_limit_auth_failures
    exempt_names = {blueprint.name for blueprint in exempt}
    budgets = {blueprint.name: own for blueprint, own in (own_budgets or {}).items()}

    def refused(reset_in: float) -> Response:
        retry_after = max(1, math.ceil(reset_in))
        response = error_response(
            429, "rate_limited", f"Too many requests; retry in {retry_after} s."
        )
        response.headers["Retry-After"] = str(retry_after)
        return response

    @app.before_request
    def _limit() -> Response | None:
        if request.blueprint in exempt_names:
            return None
        own = budgets.get(request.blueprint or "")
        caller, failures = _keys(request.blueprint if own else None)
        limit = own or rate
        try:
            mine, failed = counters.hit(caller, failures, limit)
        except redis.RedisError as exc:
            log.warning("rate limits not counted (Redis unavailable): %s", exc)
            return None
        g.rate_window, g.rate_keys, g.rate = mine, (caller, failures), limit
        if failed.count >= failures_rate.amount and not mine.trusted:
            return refused(failed.reset_in)
        if mine.count > limit.amount:
            return refused(mine.reset_in)
        return None

    @app.after_request
    def _count(response: Response) -> Response:
        window: Window | None = g.pop("rate_window", None)
        if window is None:
            return response
        caller, failures = g.rate_keys
        try:
            if response.status_code == 401:
                counters.fail(failures, failures_rate)
            elif g.get("authenticated") and not window.trusted:
                counters.trust(caller, rate)
        except redis.RedisError as exc:
            log.warning("authentication not counted (Redis unavailable): %s", exc)
        limit: Rate = g.rate
        response.headers["X-RateLimit-Limit"] = str(limit.amount)
        response.headers["X-RateLimit-Remaining"] = str(max(0, limit.amount - window.count))
        response.headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + window.reset_in))
        return response
