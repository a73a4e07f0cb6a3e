"""POST /v1/webhooks/fal: fal's signed completion callbacks move a job on at once.

Public (fal sends no API key): the Ed25519 signature is the authentication. Polling
stays the safety net, so a refused or lost callback only costs time.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, jsonify, request

from services.api import context
from services.api.errors import error_response
from services.worker.celery_app import settle_and_ingest
from shared import jobs, metrics
from shared.providers.fal_protocol import InvalidWebhook, WebhookVerifier

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


def verifier() -> WebhookVerifier:
    return current_app.extensions["naive.fal_webhooks"]


@bp.post("/fal")
def fal_callback() -> Response:
    body = request.get_data()
    try:
        request_id = verifier().verify(request.headers, body)
        callback = json.loads(body)
        if not isinstance(callback, dict) or callback.get("request_id") != request_id:
            raise InvalidWebhook("the body does not match the signed request id")
    except (InvalidWebhook, ValueError) as exc:
        metrics.WEBHOOKS.labels("refused").inc()
        return error_response(401, "invalid_signature", f"Callback refused: {exc}.")
    with context.runtime().db.transaction() as session:
        outcome, job = jobs.apply_provider_callback(
            session=session,
            request_id=request_id,
            ok=callback.get("status") == "OK",
            payload=callback.get("payload"),
            error=callback.get("error"),
        )
        if outcome == "delivered" and job is not None:
            job_id = str(job.id)
            context.send_after_commit(
                session, lambda celery: settle_and_ingest(celery, job_id).apply_async(), job_id
            )
    metrics.WEBHOOKS.labels(outcome).inc()
    return jsonify({"status": outcome})
