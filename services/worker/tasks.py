"""Celery tasks: receive a job id, call a domain function, choose the next step.

    submit_job → poll_job (self.retry with backoff, fenced by a poll token)
               → chain(settle_credits, ingest_media)

Each task may run twice, in parallel, or die half way: the domain's conditional
updates decide who moves the job, and the sweeper revives what stopped moving.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

from celery import Task, shared_task
from celery.signals import worker_process_init
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from services.worker import celery_app as names
from services.worker.pacing import backoff_seconds, poll_wait
from services.worker.sweeper import run_sweep
from shared import catalog, catalog_sync, jobs, logs, metrics
from shared.config import Settings
from shared.db import after_commit
from shared.media import library
from shared.media.ingest import IngestError, ingest_video
from shared.models import Job, utcnow
from shared.providers.base import (
    ProviderError,
    ProviderUnavailable,
    SubmitOutcomeUnknown,
    provider_arguments,
)
from shared.runtime import Runtime

log = logging.getLogger(__name__)

INGEST_ATTEMPTS = 6
# A database blip retries the task in place instead of leaving the job to the sweeper.
DB_OUTAGE_RETRY: dict[str, Any] = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
}
T = TypeVar("T")


@functools.cache
def runtime_for(settings: Settings) -> Runtime:
    return Runtime(settings)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # A pool inherited from the parent process would share sockets across children.
    runtime_for.cache_clear()


class DbTask(Task):
    """Owns the runtime and the transactions; task bodies never commit themselves."""

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task with the job's ids on every log line it writes."""
        job_id = kwargs.get("job_id", args[0] if args else None)
        with logs.job_context(**self._job_ids(job_id)):
            return super().__call__(*args, **kwargs)

    def _job_ids(self, job_id: str | None) -> dict[str, Any]:
        if job_id is None:
            return {}
        try:
            with self.transaction() as session:
                row = session.execute(
                    select(Job.account_id, Job.provider_request_id).where(
                        Job.id == uuid.UUID(job_id)
                    )
                ).first()
        except OperationalError:
            row = None  # the task itself meets the outage, and retries

        account_id, request_id = row if row else (None, None)
        return {"job_id": job_id, "account_id": account_id, "provider_request_id": request_id}

    @property
    def runtime(self) -> Runtime:
        return runtime_for(self.app.naive_settings)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.runtime.db.transaction() as session:
            yield session

    def backoff(self, attempt: int) -> float:
        settings = self.runtime.settings
        return backoff_seconds(
            attempt, initial=settings.poll_initial_seconds, cap=settings.poll_max_seconds
        )

    def call_provider(self, operation: str, call: Callable[..., T], *args: Any) -> T:
        """Call the provider, counting the call by operation and outcome."""
        outcome = "ok"
        try:
            return call(*args)
        except ProviderUnavailable:
            outcome = "unavailable"
            raise
        except SubmitOutcomeUnknown:
            outcome = "unknown"
            raise
        except ProviderError:
            outcome = "error"
            raise
        finally:
            metrics.PROVIDER_CALLS.labels(self.runtime.provider.name, operation, outcome).inc()

    def poll_wait(self, job: Job) -> float:
        return poll_wait(
            job.poll_count,
            self.runtime.settings,
            estimated_seconds=job.estimated_seconds,
            webhooks_enabled=self.runtime.provider.webhooks_enabled,
        )


def _after_commit_send(session: Session, task: Task, *args: Any, countdown: float = 0) -> None:
    after_commit(session, lambda: task.apply_async(args, countdown=countdown))


@shared_task(base=DbTask, bind=True, name=names.SUBMIT_JOB, max_retries=None, **DB_OUTAGE_RETRY)
def submit_job(self: DbTask, job_id: str) -> None:
    """The one provider call that is not idempotent: the attempt is recorded before it."""
    key = uuid.UUID(job_id)
    with self.transaction() as session:
        job = jobs.claim_submit(session=session, job_id=key)
    if job is None:
        return  # another delivery of this message has it, or the job moved on
    model = catalog.get_model(job.model)
    try:
        request_id = self.call_provider(
            "submit", self.runtime.provider.submit, model, provider_arguments(model, job.input)
        )
    except ProviderUnavailable as exc:
        with self.transaction() as session:
            jobs.forget_submit_attempt(session=session, job_id=key)
        give_up_at = job.created_at + timedelta(seconds=self.runtime.settings.submit_retry_seconds)
        if utcnow() >= min(give_up_at, job.deadline_at):
            with self.transaction() as session:
                jobs.fail(session=session, job_id=key, code="provider_error", message=str(exc))
            return
        raise self.retry(countdown=self.backoff(self.request.retries), exc=exc) from exc
    except SubmitOutcomeUnknown as exc:
        # The attempt stays recorded: the sweeper fails and releases the job once it is
        # stale, rather than risk a second render the account would pay for.
        log.error("job %s: submit outcome unknown, left to the sweeper: %s", job_id, exc)
        return
    except ProviderError as exc:
        with self.transaction() as session:
            jobs.fail(session=session, job_id=key, code=exc.code, message=str(exc))
        return
    token = jobs.new_poll_token()
    with self.transaction() as session:
        if jobs.record_submitted(
            session=session, job_id=key, request_id=request_id, poll_token=token
        ):
            _after_commit_send(session, poll_job, job_id, token, countdown=self.poll_wait(job))
            logs.bind(provider_request_id=request_id)
            log.info("submitted to the provider")
            return
    # Cancelled while the provider call was in flight: stop the render we just started.
    self.call_provider("cancel", self.runtime.provider.cancel, model, request_id)


@shared_task(base=DbTask, bind=True, name=names.POLL_JOB, max_retries=None, **DB_OUTAGE_RETRY)
def poll_job(self: DbTask, job_id: str, token: str) -> None:
    """Ask the provider once; store what it says; poll again later or hand on."""
    key = uuid.UUID(job_id)
    new_token = jobs.new_poll_token()
    with self.transaction() as session:
        job = jobs.claim_poll(session=session, job_id=key, token=token, new_token=new_token)
    if job is None:
        return  # a duplicate or fenced-out message: another loop owns this job
    model = catalog.get_model(job.model)
    request_id = job.provider_request_id or ""
    if utcnow() >= job.deadline_at:
        _fail_overdue(self, job)
        return
    try:
        status = self.call_provider("status", self.runtime.provider.status, model, request_id)
        result = (
            self.call_provider("result", self.runtime.provider.result, model, request_id)
            if status.state == "completed"
            else None
        )
    except ProviderUnavailable:
        log.warning("job %s: provider unavailable, polling again later", job_id)
        raise self.retry(args=(job_id, new_token), countdown=self.poll_wait(job)) from None
    except ProviderError as exc:
        with self.transaction() as session:
            jobs.record_provider_failure(session=session, job=job, code=exc.code, message=str(exc))
        return
    log.info(
        "provider status %s",
        status.state,
        extra={"progress": status.progress, "queue_position": status.queue_position},
    )
    with self.transaction() as session:
        if result is not None:
            if jobs.record_delivered(session=session, job_id=key, result=result):
                after_commit(
                    session, lambda: names.settle_and_ingest(self.app, job_id).apply_async()
                )
            return
        if status.state == "failed":
            jobs.record_provider_failure(
                session=session, job=job, code=status.error_code, message=status.error
            )
            return
        jobs.record_progress(session=session, job=job, status=status)
    raise self.retry(args=(job_id, new_token), countdown=self.poll_wait(job))


def _fail_overdue(task: DbTask, job: Job) -> None:
    with task.transaction() as session:
        if (
            jobs.fail(
                session=session,
                job_id=job.id,
                code="timeout",
                message="The provider did not deliver before the job's deadline.",
            )
            and job.provider_request_id
        ):
            _after_commit_send(session, cancel_at_provider, str(job.id))


@shared_task(base=DbTask, bind=True, name=names.SETTLE_CREDITS, max_retries=10, **DB_OUTAGE_RETRY)
def settle_credits(self: DbTask, job_id: str) -> None:
    with self.transaction() as session:
        jobs.settle(session=session, job_id=uuid.UUID(job_id))


@shared_task(
    base=DbTask,
    bind=True,
    name=names.INGEST_MEDIA,
    max_retries=INGEST_ATTEMPTS - 1,
    **DB_OUTAGE_RETRY,
)
def ingest_media(self: DbTask, job_id: str) -> None:
    """Copy the video into the library; after the last attempt the job completes anyway."""
    key = uuid.UUID(job_id)
    with self.transaction() as session:
        job = session.get_one(Job, key)
    if job.status != "ingesting":
        return
    url = (job.provider_result or {}).get("video", {}).get("url", "")
    try:
        video = ingest_video(
            storage=self.runtime.storage,
            url=url,
            account_id=job.account_id,
            job_id=key,
            local_root=self.runtime.settings.simulator_root,
        )
    except IngestError as exc:
        final = self.request.retries >= INGEST_ATTEMPTS - 1
        metrics.INGEST_FAILURES.labels(str(final).lower()).inc()
        if not final:
            raise self.retry(countdown=self.backoff(self.request.retries), exc=exc) from exc
        with self.transaction() as session:
            jobs.complete(session=session, job_id=key, media_asset_id=None, ingest_error=str(exc))
        log.error("ALERT job %s completed without ingest: %s", job_id, exc)
        return
    with self.transaction() as session:
        job = session.get_one(Job, key)
        asset = library.record_generated_video(session=session, job=job, video=video)
        jobs.complete(session=session, job_id=key, media_asset_id=asset.id)


@shared_task(base=DbTask, bind=True, name=names.CANCEL_AT_PROVIDER, max_retries=5)
def cancel_at_provider(self: DbTask, job_id: str) -> None:
    """Best effort: the job is already cancelled or failed here, whatever the provider says."""
    with self.transaction() as session:
        job = session.get_one(Job, uuid.UUID(job_id))
    if not job.provider_request_id:
        return
    try:
        self.call_provider(
            "cancel",
            self.runtime.provider.cancel,
            catalog.get_model(job.model),
            job.provider_request_id,
        )
    except ProviderUnavailable as exc:
        raise self.retry(countdown=self.backoff(self.request.retries), exc=exc) from exc
    except ProviderError as exc:
        log.info("job %s: provider refused the cancel: %s", job_id, exc)


@shared_task(base=DbTask, bind=True, name=names.SWEEP)
def sweep(self: DbTask) -> None:
    run_sweep(self.runtime, self.app, now=utcnow())


@shared_task(base=DbTask, bind=True, name=names.REFRESH_CATALOG)
def refresh_catalog(self: DbTask) -> None:
    """Beat: fetch listings and prices; on failure the last good ones stay in force."""
    try:
        with self.transaction() as session:
            count = catalog_sync.refresh(session=session, settings=self.runtime.settings)
    except catalog_sync.CatalogUnavailable as exc:
        log.warning("catalog refresh failed: %s", exc)
        return
    log.info("catalog refreshed: %d models priced by the platform", count)
