"""POST /v1/video/generate, GET /v1/video/{id}, the model catalog and price previews."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from services.api import context
from services.api.params import json_body
from services.api.routes.jobs import get_job, render_job
from services.worker.celery_app import SUBMIT_JOB
from shared import catalog, jobs, logs, metrics, pricing
from shared.db import after_commit
from shared.errors import InvalidInput

bp = Blueprint("video", __name__, url_prefix="/v1/video")
log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 200


@bp.post("/generate")
def generate() -> tuple[Response, int]:
    runtime = context.runtime()
    with runtime.db.transaction() as session:
        account_id = context.authenticated_account(session)
        body = json_body()
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidInput(
                "Bad Idempotency-Key.",
                fields={"Idempotency-Key": f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters"},
            )
        submission = jobs.create_job(
            session=session,
            settings=runtime.settings,
            catalog=context.catalog(session),
            provider_name=runtime.settings.provider,
            account_id=account_id,
            body=body,
            idempotency_key=key,
        )
        job = submission.job
        logs.bind(job_id=job.id)
        log.info(
            "job accepted" if submission.created else "job replayed by Idempotency-Key",
            extra={"model": job.model, "estimated_credits": job.estimated_credits / 100},
        )
        if submission.created:
            job_id, model = str(job.id), job.model
            after_commit(session, lambda: metrics.JOBS_SUBMITTED.labels(model).inc())
            context.send_after_commit(
                session, lambda celery: celery.send_task(SUBMIT_JOB, args=(job_id,)), job_id
            )
    payload = {
        "job_id": str(job.id),
        "status": jobs.PUBLIC_STATUS[job.status],
        "type": job.type,
        "model": job.model,
        "estimated_seconds": job.estimated_seconds,
        "estimated_credits": render_job(job)["estimated_credits"],
        "hint": (
            f"Poll GET /v1/jobs/{job.id} or GET /v1/video/{job.id}. "
            "Credits charged on completion only."
        ),
    }
    response = jsonify(payload)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not submission.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202


@bp.get("/models")
def models() -> Response:
    context.authenticated_account()
    offered = context.catalog()
    data = [model.to_dict() for model in offered.models]
    credit_value = float(context.runtime().settings.credit_value_usd)
    for entry in data:
        entry["pricing"]["credit_value_usd"] = credit_value
    return jsonify({"data": data, "count": len(data), "source": offered.source})


@bp.get("/pricing")
def price_preview() -> Response:
    context.authenticated_account()
    model = context.catalog().get(request.args.get("model"))
    duration = request.args.get("duration") or request.args.get("dur")
    if model.fixed_duration_seconds is not None:
        seconds = model.fixed_duration_seconds
    else:
        normalized = catalog.normalize_input(model, _preview_input(model, duration))
        seconds = int(normalized["duration"])
    return jsonify(pricing.quote(model, seconds, context.runtime().settings).to_dict())


def _preview_input(model: catalog.VideoModel, duration: str | None) -> dict[str, str]:
    """A minimal valid input around the duration, so the schema checks the duration alone."""
    stub = {name: "x" for name in model.required}
    if "image_url" in stub:
        stub["image_url"] = "https://example.com/image.png"
    return stub if duration is None else {**stub, "duration": duration}


# Registered last, so `/models` and `/pricing` are not taken for job ids.
bp.add_url_rule("/<job_id>", "get_video_job", get_job, methods=["GET"])
