"""POST /v1/video/generate, GET /v1/video/{id}, the model catalog and price previews."""

from __future__ import annotations

import logging
import uuid

from flask import Blueprint, Response, request
from sqlalchemy.orm import Session

from services.api import context, prefer
from services.api.contract import Param, Reply, parse_body, render, route
from services.api.routes.jobs import JOB_REPLIES, get_job, job_view
from services.worker.celery_app import ADMIT_JOBS, SUBMIT_JOB, send_after_commit
from shared import catalog, logs, metrics
from shared.catalog import pricing, quotes
from shared.catalog.schemas import (
    BindingQuote,
    ModelList,
    PriceQuote,
    PricingQuery,
    QuoteRequest,
)
from shared.db import after_commit
from shared.errors import (
    BudgetExceeded,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidInput,
    InvalidModel,
    NotFound,
    QuoteExpired,
    QuoteMismatch,
)
from shared.jobs import service as jobs
from shared.jobs.models import Job as JobRow
from shared.jobs.schemas import (
    IDEMPOTENCY_KEY_RULE,
    IDEMPOTENCY_KEY_SCHEMA,
    Job,
    JobAccepted,
    JobCreate,
    valid_idempotency_key,
)

bp = Blueprint("video", __name__, url_prefix="/v1/video")
log = logging.getLogger(__name__)

IDEMPOTENCY_KEY = Param(
    "header",
    "Idempotency-Key",
    IDEMPOTENCY_KEY_SCHEMA,
    "The same key and body return the first job; another body is refused.",
)
ACCEPTED = Reply(
    "Accepted (or replayed by `Idempotency-Key`; or not ended within `Prefer: wait`): poll "
    "the job.",
    JobAccepted,
    headers={
        "Location": {
            "required": True,
            "description": "`/v1/jobs/{job_id}`",
            "schema": {"type": "string"},
        },
        "Idempotent-Replayed": {
            "description": "`true` when an earlier job is returned.",
            "schema": {"type": "string", "enum": ["true"]},
        },
        **prefer.APPLIED_HEADER,
    },
    links={
        name: {"operationId": endpoint, "parameters": {"job_id": "$response.body#/job_id"}}
        for name, endpoint in (("GetJob", "jobs.get_job"), ("CancelJob", "jobs.cancel_job"))
    },
)
ENDED_WHILE_WAITING = Reply(
    "With `Prefer: wait=N`: the job ended within the wait (or had ended, for a replay); "
    "the job as `GET /v1/jobs/{id}` returns it.",
    Job,
    headers={
        **ACCEPTED.headers,
        "Preference-Applied": {**prefer.APPLIED_HEADER["Preference-Applied"], "required": True},
    },
)


@route(
    bp,
    "POST",
    "/generate",
    summary="Submit a video generation job",
    body=JobCreate,
    parse=False,  # authenticated first, inside the submit's transaction
    replies={202: ACCEPTED, 200: ENDED_WHILE_WAITING},
    errors=(
        InsufficientCredits,
        BudgetExceeded,
        InvalidModel,
        IdempotencyConflict,
        QuoteExpired,
        QuoteMismatch,
        InvalidInput,
    ),
    params=(IDEMPOTENCY_KEY, prefer.WAIT),
)
def generate() -> Response:
    runtime = context.runtime()
    with runtime.db.transaction() as session:
        account_id = context.authenticated_account(session)
        body = parse_body(JobCreate)
        key = idempotency_key()
        catalog = context.catalog(session)
        if jobs.resolves_hosts(body.input, body.webhook_url):
            session.commit()  # the key's lookup: the submit's transaction begins after DNS
        submission = jobs.create_job(
            session=session,
            settings=runtime.settings,
            catalog=catalog,
            provider_name=runtime.settings.provider,
            account_id=account_id,
            request=body,
            idempotency_key=key,
            api_key_id=context.api_key_id(),
        )
        job = submission.job
        logs.bind(job_id=job.id)
        log.info(
            "job accepted" if submission.created else "job replayed by Idempotency-Key",
            extra={"model": job.model, "estimated_credits": job.estimated_credits / 100},
        )
        if submission.created:
            model = job.model
            after_commit(session, lambda: metrics.child(metrics.JOBS_SUBMITTED, model).inc())
            send_first_step(session, job)
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if not submission.created:
        headers["Idempotent-Replayed"] = "true"
    # A wait that ended in the job's view would not carry the webhook's secret: with
    # `webhook_url`, the preference is not applied (RFC 7240 lets a server ignore it).
    wait = None if body.webhook_url is not None else prefer.requested_wait()
    if wait is None:
        return render(JobAccepted.of(job, submission.webhook_secret), 202, headers)
    job = prefer.until_final(job, wait)
    headers |= prefer.applied(wait)
    if job.status.is_terminal:
        return render(job_view(job), 200, headers)
    return render(JobAccepted.of(job), 202, headers)


def idempotency_key() -> str | None:
    """The request's `Idempotency-Key` (None without one), or `InvalidInput`."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not valid_idempotency_key(key):
        raise InvalidInput("Bad Idempotency-Key.", fields={"Idempotency-Key": IDEMPOTENCY_KEY_RULE})
    return key


def send_first_step(session: Session, job: JobRow) -> None:
    """After the commit: the job's submit, or (a job that must wait for a slot) a round of
    the fair scheduler for its provider."""
    if job.admitted_at is not None:
        send_after_commit(session, context.celery(), SUBMIT_JOB, str(job.id))
    else:
        send_after_commit(session, context.celery(), ADMIT_JOBS, job.provider)


@route(
    bp,
    "GET",
    "/models",
    summary="The model catalog",
    replies={200: Reply("The models on offer.", ModelList)},
)
def models() -> ModelList:
    context.authenticated_account()
    credit_value = float(context.runtime().settings.credit_value_usd)
    return ModelList.of(context.catalog(), credit_value)


@route(
    bp,
    "GET",
    "/pricing",
    summary="The credits a job would cost",
    query=PricingQuery,
    replies={200: Reply("The quote.", PriceQuote)},
    errors=(InvalidModel, InvalidInput),
    endpoint="price_preview",
)
def price_preview(query: PricingQuery) -> PriceQuote:
    context.authenticated_account()
    model = context.catalog().get(query.model)
    name = "dur" if query.duration is None and query.dur is not None else "duration"
    seconds = _preview_seconds(model, getattr(query, name), name)
    return PriceQuote.of(pricing.quote(model, seconds, context.runtime().settings))


def _preview_seconds(model: catalog.VideoModel, duration: int | None, name: str) -> int:
    """The output seconds of a job of `duration` (the model's default if None), which is
    checked as generate checks `input.duration` (a model priced per video takes none) but
    named as the query parameter `name` that carried it."""
    try:
        normalized = catalog.normalize_input(model, _preview_input(model, duration))
    except InvalidInput as refused:
        problems = "; ".join(refused.extra["fields"].values())  # the stub's one field: duration
        given = "its default" if duration is None else f"`{name}={duration}`"
        raise InvalidInput(
            f"{model.id} does not take {given}.",
            fields={name: problems},
            models_url="/v1/video/models",
        ) from None
    return model.output_seconds(normalized)


@route(
    bp,
    "POST",
    "/quotes",
    summary="A binding quote: the price of this exact request, held until it expires",
    body=QuoteRequest,
    replies={
        201: Reply("The quote; submit with its `quote_id` before `expires_at`.", BindingQuote)
    },
    errors=(InvalidModel, InvalidInput),
)
def create_quote(body: QuoteRequest) -> Response:
    runtime = context.runtime()
    with runtime.db.transaction() as session:
        account_id = context.authenticated_account(session)
        issued = quotes.issue(
            session=session,
            settings=runtime.settings,
            catalog=context.catalog(session),
            account_id=account_id,
            request=body,
        )
    return render(issued, 201)


def _preview_input(model: catalog.VideoModel, duration: int | None) -> dict[str, str]:
    """A minimal valid input around the duration, so the schema checks the duration alone."""
    stub = {name: "x" for name in model.required}
    if "image_url" in stub:
        stub["image_url"] = "https://example.com/image.png"
    return stub if duration is None else {**stub, "duration": str(duration)}


# Only a UUID is a job id here, so `GET /generate` answers 405 (the path is POST's) rather
# than "no job 'generate'", and `/models` and `/pricing` are never taken for ids.
@route(
    bp,
    "GET",
    "/<uuid:job_id>",
    summary="A job (alias)",
    replies=JOB_REPLIES,
    errors=(NotFound,),
    params=(prefer.WAIT,),
)
def get_video_job(job_id: uuid.UUID) -> Response:
    return get_job(job_id=str(job_id))
