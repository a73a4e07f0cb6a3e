"""Request counts and latency by route template (never by raw path: ids would explode it),
and by method, where any method HTTP does not define counts as "other": a client can send
any token as a method, and each would otherwise be a new series."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, child

METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in METHODS else "other"
        child(HTTP_REQUESTS, route, method, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            child(HTTP_LATENCY, route, method).observe(time.perf_counter() - started)
        return response
