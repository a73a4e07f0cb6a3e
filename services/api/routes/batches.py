"""POST /v1/video/batches, GET and DELETE /v1/video/batches/{id}."""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from services.api import context
from services.api.contract import Reply, parse_body, render, route
from services.api.routes.jobs import job_view
from services.api.routes.video import IDEMPOTENCY_KEY, idempotency_key, send_first_step
from shared import logs, metrics
from shared.batches import service as batches
from shared.batches.models import Batch as BatchRow
from shared.batches.schemas import Batch, BatchAccepted, BatchCreate
from shared.db import after_commit
from shared.errors import (
    BudgetExceeded,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidInput,
    InvalidModel,
    NotFound,
)
from shared.jobs import service as jobs
from shared.jobs.models import Job as JobRow
from shared.ledger.credits import to_credits

bp = Blueprint("batches", __name__, url_prefix="/v1/video/batches")
log = logging.getLogger(__name__)


def batch_view(batch: BatchRow, items: list[JobRow]) -> Batch:
    ended = [job.completed_at for job in items if job.completed_at is not None]
    state = batches.status(items)
    return Batch(
        id=batch.id,
        status=state,
        item_count=batch.item_count,
        counts=batches.counts(items),
        estimated_credits=to_credits(batch.held),
        charged_credits=to_credits(sum(job.credits_used or 0 for job in items)),
        created_at=batch.created_at,
        completed_at=max(ended) if ended and state != "processing" else None,
        items=[job_view(job) for job in items],
    )


def _count_submitted(models: list[str]) -> None:
    for model in models:
        metrics.child(metrics.JOBS_SUBMITTED, model).inc()


@route(
    bp,
    "POST",
    "",
    summary="Submit up to 100 jobs at once under one hold",
    body=BatchCreate,
    parse=False,  # authenticated first, inside the submit's transaction
    replies={
        202: Reply(
            "Accepted (or replayed by `Idempotency-Key`): follow the batch.",
            BatchAccepted,
            headers={
                "Location": {
                    "required": True,
                    "description": "`/v1/video/batches/{batch_id}`",
                    "schema": {"type": "string"},
                }
            },
        )
    },
    errors=(InsufficientCredits, BudgetExceeded, InvalidModel, IdempotencyConflict, InvalidInput),
    params=(IDEMPOTENCY_KEY,),
)
def create_batch() -> Response:
    runtime = context.runtime()
    with runtime.db.transaction() as session:
        account_id = context.authenticated_account(session)
        body = parse_body(BatchCreate)
        key = idempotency_key()
        catalog = context.catalog(session)
        if any(jobs.resolves_hosts(item.input) for item in body.items):
            session.commit()  # the key's lookup: the batch's transaction begins after DNS
        submission = batches.create_batch(
            session=session,
            settings=runtime.settings,
            catalog=catalog,
            provider_name=runtime.settings.provider,
            account_id=account_id,
            api_key_id=context.api_key_id(),
            request=body,
            idempotency_key=key,
        )
        batch = submission.batch
        logs.bind(batch_id=batch.id)
        if submission.created:
            log.info("batch accepted", extra={"items": batch.item_count})
            models = [job.model for job in submission.items]
            after_commit(session, lambda: _count_submitted(models))
            for job in submission.items:
                send_first_step(session, job)
        accepted = BatchAccepted(
            batch_id=batch.id,
            status=batches.status(submission.items),
            item_count=batch.item_count,
            job_ids=[job.id for job in submission.items],
            estimated_credits=to_credits(batch.held),
            hint=(
                f"Follow GET /v1/video/batches/{batch.id}; each item is a job "
                "(GET /v1/jobs/{id}). Only completed items are charged."
            ),
        )
    headers = {"Location": f"/v1/video/batches/{batch.id}"}
    if not submission.created:
        headers["Idempotent-Replayed"] = "true"
    return render(accepted, 202, headers)


@route(
    bp,
    "GET",
    "/<batch_id>",
    summary="A batch: its status, counts by status and its items",
    replies={200: Reply("The batch.", Batch)},
    errors=(NotFound,),
)
def get_batch(batch_id: str) -> Batch:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        batch = batches.get_batch(session=session, account_id=account_id, batch_id=batch_id)
        rows = batches.items(session=session, batch=batch)
    return batch_view(batch, rows)


@route(
    bp,
    "DELETE",
    "/<batch_id>",
    summary="Cancel the items that have not started (their share of the hold is released)",
    replies={200: Reply("The batch after the cancel.", Batch)},
    errors=(NotFound,),
)
def cancel_batch(batch_id: str) -> Batch:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        batch = batches.cancel_batch(session=session, account_id=account_id, batch_id=batch_id)
        rows = batches.items(session=session, batch=batch)
    return batch_view(batch, rows)
