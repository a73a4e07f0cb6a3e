"""GET /v1/jobs, GET and DELETE /v1/jobs/{id}, GET /v1/jobs/{id}/events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from services.api import context, event_stream, prefer
from services.api.contract import Reply, render, route
from services.worker.celery_app import CANCEL_AT_PROVIDER, send_after_commit
from shared import logs
from shared.errors import InvalidInput, NotCancellable, NotFound
from shared.jobs import admission
from shared.jobs import service as jobs
from shared.jobs.models import Job as JobRow
from shared.jobs.schemas import Job, JobListQuery, JobPage, with_our_video
from shared.jobs.status import JobStatus
from shared.media.urls import job_video_urls

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
log = logging.getLogger(__name__)

JOB_REPLIES = {200: Reply("The job.", Job, headers=prefer.APPLIED_HEADER)}


def job_view(job: JobRow) -> Job:
    """The job as the API shows it: its video's URL is our signed (or presigned) copy;
    while it waits for a slot, why and its place in the fair queue."""
    runtime = context.runtime()
    urls = job_video_urls(
        job,
        storage=runtime.storage,
        base_url=context.base_url(),
        secret_key=runtime.settings.secret_key,
    )
    place = None
    if admission.is_waiting(job):
        with runtime.db.transaction() as session:
            place = admission.place_in_line(session=session, job=job)
    return Job.of(job, urls.content if urls else None, place)


def event_view(job: JobRow) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """How the job's events show it (their `data`, the view when each was written): as
    `job_view` does, with our copy's URL once ingested (an event keeps the provider's)."""
    runtime = context.runtime()
    base_url = context.base_url()  # read now: the stream runs after the request's context

    def view(data: dict[str, Any]) -> dict[str, Any]:
        result = data.get("result")
        if not result:
            return data
        urls = job_video_urls(
            job,
            storage=runtime.storage,
            base_url=base_url,
            secret_key=runtime.settings.secret_key,
            result=result,
        )
        return {**data, "result": with_our_video(result, urls.content if urls else None)}

    return view


@route(
    bp,
    "GET",
    "",
    summary="The account's jobs, newest first",
    query=JobListQuery,
    replies={200: Reply("A page of jobs.", JobPage)},
    errors=(InvalidInput,),
)
def list_jobs(query: JobListQuery) -> JobPage:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        page, next_cursor = jobs.list_jobs(
            session=session,
            account_id=account_id,
            status=query.status,
            job_type=query.type,
            limit=query.limit,
            cursor=query.cursor,
        )
        data = [job_view(job) for job in page]
    return JobPage(data=data, next_cursor=next_cursor, has_more=next_cursor is not None)


@route(
    bp,
    "GET",
    "/<job_id>",
    summary="A job",
    replies=JOB_REPLIES,
    errors=(NotFound,),
    params=(prefer.WAIT,),
)
def get_job(job_id: str) -> Response:
    """The job; with `Prefer: wait=N`, once it is final or N seconds have passed."""
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        job = jobs.get_job(session=session, account_id=account_id, job_id=job_id)
    wait = prefer.requested_wait()
    if wait is None:
        return render(job_view(job))
    return render(job_view(prefer.until_final(job, wait)), headers=prefer.applied(wait))


@route(
    bp,
    "DELETE",
    "/<job_id>",
    summary="Cancel a queued or processing job",
    replies={
        200: Reply("Cancelled; its hold is released.", Job),
        202: Reply("The provider is asked to stop it.", Job),
    },
    errors=(NotFound, NotCancellable),
)
def cancel_job(job_id: str) -> Response:
    """200 with the cancelled job, or 202 while the provider is asked to stop it."""
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        job, at_provider = jobs.cancel(session=session, account_id=account_id, job_id=job_id)
        logs.bind(job_id=job.id, provider_request_id=job.provider_request_id)
        log.info("cancel requested at the provider" if at_provider else "job cancelled")
        if at_provider:
            send_after_commit(session, context.celery(), CANCEL_AT_PROVIDER, str(job.id))
        return render(job_view(job), 200 if job.status is JobStatus.CANCELLED else 202)


@route(
    bp,
    "GET",
    "/<job_id>/events",
    summary="The job's events, live (Server-Sent Events)",
    replies={
        200: Reply(
            event_stream.DESCRIPTION,
            media_type=event_stream.MEDIA_TYPE,
            headers=event_stream.STREAM_HEADERS,
        ),
        204: Reply("The job has ended and `Last-Event-ID` was its final event: nothing to send."),
    },
    errors=(NotFound, InvalidInput),
    params=(event_stream.LAST_EVENT_ID,),
)
def job_events(job_id: str) -> Response:
    """The stream; unknown jobs and other accounts' are 404 before anything is streamed."""
    account_id = context.authenticated_account()
    runtime = context.runtime()
    with runtime.db.transaction() as session:
        job = jobs.get_job(session=session, account_id=account_id, job_id=job_id)
    after = event_stream.last_event_id(request.headers.get("Last-Event-ID"), job.event_seq)
    if job.status.is_terminal and after == job.event_seq:
        return Response(status=204)
    settings = runtime.settings
    return event_stream.response(
        db=runtime.db,
        job_id=job.id,
        view=event_view(job),
        after=after,
        heartbeat=settings.event_stream_heartbeat_seconds,
        limit=settings.event_stream_max_seconds,
        sock=request.environ.get("gunicorn.socket"),
        head=request.method == "HEAD",
    )
