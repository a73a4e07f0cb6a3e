"""POST /v1/webhooks/fal: fal's signed completion callbacks move a job on at once.

Public (fal sends no API key): the Ed25519 signature is the authentication. Polling
stays the safety net, so a refused or lost callback only costs time.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, current_app, request
from pydantic import BaseModel, ConfigDict, ValidationError

from services.api import context
from services.api.contract import UNAVAILABLE, Param, Reply, render, route
from services.api.errors import error_response
from services.worker.celery_app import SETTLE_CREDITS, send_after_commit
from shared import metrics
from shared.errors import ErrorBody
from shared.jobs import service as jobs
from shared.providers.fal_protocol import InvalidWebhook, WebhookVerifier

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


class FalCallback(BaseModel):
    """fal's completion callback (the body that its signature covers)."""

    request_id: str
    gateway_request_id: str | None = None
    status: Literal["OK", "ERROR"]
    payload: Any = None
    error: str | None = None


class CallbackOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["delivered", "failed", "cancelled", "ignored"]


FAL_HEADERS = (
    Param("header", "X-Fal-Webhook-Request-Id", {"type": "string"}, "fal's request id.", True),
    Param("header", "X-Fal-Webhook-User-Id", {"type": "string"}, "fal's user id.", True),
    Param(
        "header",
        "X-Fal-Webhook-Timestamp",
        {"type": "string", "pattern": "^[0-9]+$"},
        "Unix seconds; refused beyond ±300 s of our clock.",
        True,
    ),
    Param(
        "header",
        "X-Fal-Webhook-Signature",
        {"type": "string", "pattern": "^[0-9a-fA-F]+$"},
        "Hex Ed25519 signature of `request_id\\nuser_id\\ntimestamp\\nsha256_hex(body)`, "
        "by a key of fal's JWKS.",
        True,
    ),
)


def verifier() -> WebhookVerifier:
    return current_app.extensions["naive.fal_webhooks"]


@route(
    bp,
    "POST",
    "/fal",
    summary="fal's signed completion callback (no API key: the signature authenticates)",
    body=FalCallback,
    parse=False,  # the signature covers the raw bytes: verify them before parsing
    replies={
        200: Reply("Applied, or ignored when the job has moved on.", CallbackOutcome),
        401: Reply("Unsigned, forged, stale or malformed.", ErrorBody),
        503: UNAVAILABLE,
    },
    params=FAL_HEADERS,
    security=(),
)
def fal_callback() -> Response:
    body = request.get_data()
    try:
        request_id = verifier().verify(request.headers, body)
        callback = FalCallback.model_validate_json(body)
        if callback.request_id != request_id:
            raise InvalidWebhook("the body does not match the signed request id")
    except (InvalidWebhook, ValidationError) as exc:
        metrics.WEBHOOKS.labels("refused").inc()
        return error_response(401, "invalid_signature", f"Callback refused: {exc}.")
    with context.runtime().db.transaction() as session:
        outcome, job = jobs.apply_provider_callback(
            session=session,
            request_id=request_id,
            ok=callback.status == "OK",
            payload=callback.payload,
            error=callback.error,
        )
        if outcome == "delivered" and job is not None:
            send_after_commit(session, context.celery(), SETTLE_CREDITS, str(job.id))
    metrics.WEBHOOKS.labels(outcome).inc()
    return render(CallbackOutcome.model_validate({"status": outcome}))
