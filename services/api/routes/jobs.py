"""GET /v1/jobs, GET and DELETE /v1/jobs/{id}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify

from services.api import context
from services.api.params import int_arg, str_arg
from services.api.serializers import job_to_dict
from services.worker.celery_app import CANCEL_AT_PROVIDER
from shared import jobs, logs
from shared.models import Job

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
log = logging.getLogger(__name__)


def render_job(job: Job) -> dict[str, Any]:
    return job_to_dict(job, context.base_url(), context.runtime().settings.secret_key)


@bp.get("")
def list_jobs() -> Response:
    account_id = context.authenticated_account()
    limit = int_arg("limit", 20, minimum=1, maximum=100)
    with context.runtime().db.transaction() as session:
        page, next_cursor = jobs.list_jobs(
            session=session,
            account_id=account_id,
            status=str_arg("status"),
            job_type=str_arg("type"),
            limit=limit,
            cursor=str_arg("cursor"),
        )
        data = [render_job(job) for job in page]
    return jsonify({"data": data, "next_cursor": next_cursor, "has_more": next_cursor is not None})


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        job = jobs.get_job(session=session, account_id=account_id, job_id=job_id)
        return jsonify(render_job(job))


@bp.delete("/<job_id>")
def cancel_job(job_id: str) -> tuple[Response, int]:
    """200 with the cancelled job, or 202 while the provider is asked to stop it."""
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        job, at_provider = jobs.cancel(session=session, account_id=account_id, job_id=job_id)
        logs.bind(job_id=job.id, provider_request_id=job.provider_request_id)
        log.info("cancel requested at the provider" if at_provider else "job cancelled")
        if at_provider:
            key = str(job.id)
            context.send_after_commit(
                session, lambda celery: celery.send_task(CANCEL_AT_PROVIDER, args=(key,)), key
            )
        return jsonify(render_job(job)), 200 if job.status == "cancelled" else 202
