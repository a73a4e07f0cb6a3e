"""The API's Prometheus metrics, on a listener of their own, never on the public port.

gunicorn binds two addresses (the Procfile's `--bind`s): the public PORT and
API_METRICS_PORT. Each request carries the port of the listener it arrived on
(`SERVER_PORT`, set by the server from the socket, not from the client's Host header), so
requests to the metrics port get the metrics and nothing else, and requests to the public
port get the API, which has no /metrics. The metrics port is for Prometheus inside the
network (a Kubernetes pod port, a firewalled host port): no rate limit, no API key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shared.errors import error_body
from shared.metrics import (
    BrokerCollector,
    Cached,
    DatabaseCollector,
    MediaSpaceCollector,
    SchedulingCollector,
    WebhookBacklogCollector,
    registry,
)
from shared.runtime import Runtime

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# What the database and the broker say is read at most this often per API process.
LIVE_SECONDS = 10.0


def live_registry(runtime: Runtime) -> CollectorRegistry:
    """Jobs in flight, the webhook backlog and the fair scheduler's queue (the database),
    the queue length (the broker) and the media storage's free space, cached."""
    live = CollectorRegistry()
    settings = runtime.settings
    live.register(Cached(DatabaseCollector(runtime.db), LIVE_SECONDS))
    live.register(Cached(WebhookBacklogCollector(runtime.db), LIVE_SECONDS))
    live.register(
        Cached(SchedulingCollector(runtime.db, settings.provider_concurrency), LIVE_SECONDS)
    )
    live.register(
        Cached(BrokerCollector(settings.broker_url, settings.celery_queues), LIVE_SECONDS)
    )
    live.register(Cached(MediaSpaceCollector(runtime.storage.free_bytes), LIVE_SECONDS))
    return live


def with_metrics_listener(api: WSGIApplication, runtime: Runtime) -> WSGIApplication:
    """`api` on every listener but the metrics port, where GET /metrics answers instead."""
    port = str(runtime.settings.api_metrics_port)
    live = live_registry(runtime)

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("SERVER_PORT") != port:
            return api(environ, start_response)
        if environ.get("PATH_INFO") != "/metrics":
            body = json.dumps(error_body("not_found", "Only /metrics is served here.")).encode()
            start_response("404 Not Found", _headers("application/json", body))
            return [body]
        body = generate_latest(registry()) + generate_latest(live)
        start_response("200 OK", _headers(CONTENT_TYPE_LATEST, body))
        return [body]

    return dispatch


def _headers(content_type: str, body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", content_type), ("Content-Length", str(len(body)))]
