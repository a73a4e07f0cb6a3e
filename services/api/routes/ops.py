"""Operations: liveness, readiness and metrics.

/readyz checks the database only: the API keeps accepting jobs while the broker is
down (the sweeper sends their messages later), so a broker outage must not take the
API out of its load balancer.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.api import context, openapi
from shared.metrics import BrokerCollector, DatabaseCollector, registry

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    context.runtime().db.ping()
    return jsonify({"status": "ready"})


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.document())


@bp.get("/metrics")
def metrics() -> Response:
    """Every process's counters, plus what the database and the broker say right now."""
    runtime = context.runtime()
    live = CollectorRegistry()
    live.register(DatabaseCollector(runtime.db))
    live.register(BrokerCollector(runtime.settings.broker_url, (runtime.settings.celery_queue,)))
    body = generate_latest(registry()) + generate_latest(live)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
