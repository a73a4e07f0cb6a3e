"""POST /v1/webhooks/fal: fal's signed completion callbacks move a job on at once.

Public (fal sends no API key): the Ed25519 signature is the authentication. Polling
stays the safety net, so a refused or lost callback only costs time.

A verified callback is never answered 500. One whose body we cannot use (no video in an
OK payload, as when fal could not serialise the output and sent `payload: null` with a
`payload_error`) makes the job's poll due now: the queue API gives the result. One that
comes before the worker has recorded the request id is kept and applied once the id is
known: fal spreads its retries of a refused callback over two hours, so refusing it
would cost more than the first safety poll.

The route is rate limited per client address (`RATE_LIMIT_WEBHOOKS`).
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, current_app, request
from pydantic import BaseModel, ConfigDict, ValidationError

from services.api import context
from services.api.contract import RATE_LIMITED, UNAVAILABLE, Param, Reply, render, route
from services.api.errors import error_response
from services.worker.celery_app import send_callback_follow_up
from shared import metrics
from shared.errors import ErrorBody
from shared.jobs import service as jobs
from shared.providers.base import CallbackOutcome
from shared.providers.fal_protocol import InvalidWebhook, WebhookVerifier, callback_outcome

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


class FalCallback(BaseModel):
    """fal's completion callback (the body that its signature covers)."""

    request_id: str
    gateway_request_id: str | None = None
    status: Literal["OK", "ERROR"]
    payload: Any = None
    # Set (with `payload: null`) when fal could not serialise the output.
    payload_error: str | None = None
    # For ERROR: "Invalid status code: N", N the HTTP status of the result in `payload`.
    error: str | None = None


class CallbackAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["delivered", "failed", "cancelled", "polling", "kept", "ignored"]


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
        200: Reply(
            "Applied; `polling`: the job is polled now (no usable video in the callback); "
            "`kept`: applied once the job knows the request id; `ignored`: the job has "
            "moved on.",
            CallbackAnswer,
        ),
        401: Reply("Unsigned, forged, stale or malformed.", ErrorBody),
        429: RATE_LIMITED,
        503: UNAVAILABLE,
    },
    params=FAL_HEADERS,
    security=(),
)
def fal_callback() -> Response:
    body = request.get_data()
    try:
        request_id = verifier().verify(request.headers, body)
    except InvalidWebhook as exc:
        metrics.WEBHOOKS.labels("refused").inc()
        return error_response(401, "invalid_signature", f"Callback refused: {exc}.")
    outcome = _outcome(request_id, body)
    with context.runtime().db.transaction() as session:
        applied, job = jobs.apply_provider_callback(
            session=session, request_id=request_id, outcome=outcome
        )
        send_callback_follow_up(session, context.celery(), applied, job)
    if applied == "kept":
        # The worker may have recorded the id meanwhile, and looked before this commit.
        with context.runtime().db.transaction() as session:
            early, job = jobs.apply_early_callback(session=session, request_id=request_id)
            send_callback_follow_up(session, context.celery(), early, job)
    metrics.WEBHOOKS.labels(applied).inc()
    return render(CallbackAnswer.model_validate({"status": applied}))


def _outcome(request_id: str, body: bytes) -> CallbackOutcome:
    """What the signed body says; None (poll now) for a body we cannot use."""
    try:
        callback = FalCallback.model_validate_json(body)
    except ValidationError:
        return None
    if callback.request_id != request_id:
        return None
    return callback_outcome(callback.status, callback.payload, callback.error)
