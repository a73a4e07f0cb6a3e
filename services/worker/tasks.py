"""Celery tasks: receive a job id, call a domain function, send the next step.

    submit_job → poll_job / poll_batch (services/worker/poll_tasks.py, fenced by a poll
               token) → settle_credits → ingest_media

Each task may run twice, in parallel, or die half way: the state machine's conditional
updates decide who moves the job, and the dispatcher revives what stopped moving. Every
rule (deadlines, when to give up, what the provider's answer means) is asked of
`shared.jobs.machine`; the tasks hold none of their own.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery import Task, shared_task
from celery.signals import worker_process_init
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from services.worker import celery_app as names
from services.worker.dispatcher import admit_waiting, dispatch
from shared import catalog, logs, metrics
from shared.catalog import VideoModel
from shared.catalog import sync as catalog_sync
from shared.config import Settings
from shared.db import utcnow
from shared.jobs import machine
from shared.jobs import service as jobs
from shared.jobs.machine import Failure
from shared.jobs.models import Job
from shared.jobs.pacing import (
    backoff_seconds,
    estimated_seconds,
    measured_render_seconds,
    pacing_seconds,
    poll_wait,
    recent_renders,
)
from shared.media import library
from shared.media.ingest import IngestedVideo, IngestError, ingest_video
from shared.providers.base import (
    ProviderError,
    ProviderUnavailable,
    SubmitOutcomeUnknown,
    provider_arguments,
)
from shared.runtime import Runtime

log = logging.getLogger(__name__)

# A database blip retries the task in place instead of leaving the job to the dispatcher.
DB_OUTAGE_RETRY: dict[str, Any] = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
}
# Errors of the world, not of the job: the step is tried again (retry, the dispatcher).
TRANSIENT = (OperationalError, SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError)
T = TypeVar("T")


HARD_AFTER_SOFT = timedelta(seconds=5)
# Ends (hard) by the end of the ingest's lease, so two downloads of one job never overlap;
# the soft limit is also the download's overall deadline (connect, headers and body).
INGEST_TIME_LIMIT = machine.INGEST_BUDGET - HARD_AFTER_SOFT
CATALOG_TIME_LIMIT = timedelta(seconds=60)  # every listing and price page
SHORT_TIME_LIMIT = timedelta(seconds=30)  # database work, one provider call


def time_limits(soft: timedelta) -> dict[str, float]:
    """Every task has both: the soft limit raises in the task (a transient error: the step
    is tried again), the hard one kills the process `HARD_AFTER_SOFT` later."""
    return {
        "soft_time_limit": soft.total_seconds(),
        "time_limit": (soft + HARD_AFTER_SOFT).total_seconds(),
    }


@functools.cache
def runtime_for(settings: Settings) -> Runtime:
    return Runtime(settings)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # A pool inherited from the parent process would share sockets across children.
    runtime_for.cache_clear()


class DbTask(Task):
    """Owns the runtime and the transactions; task bodies never commit themselves.

    Log lines carry the job's id from the message; the account and the provider's request
    id are bound once the task has claimed the job (no extra read just for logging)."""

    abstract = True
    # The message's first argument is the job's id (False: a task of many jobs, a batch of
    # polls, which handles each job's log lines and failures itself).
    per_job = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with logs.job_context(job_id=self._job_id(args, kwargs)):
            return super().__call__(*args, **kwargs)

    def _job_id(self, args: Any, kwargs: Any) -> str | None:
        if not self.per_job:
            return None
        return kwargs.get("job_id", args[0] if args else None)

    @property
    def runtime(self) -> Runtime:
        return runtime_for(self.app.naive_settings)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """A step raised what nobody expected: its job ends now (`fail_unexpectedly`).
        Outages and time limits are not that: the dispatcher tries those again."""
        job_id = self._job_id(args, kwargs)
        if isinstance(exc, TRANSIENT) or job_id is None:
            return
        self.fail_unexpectedly(uuid.UUID(job_id), exc)

    def fail_unexpectedly(self, job_id: uuid.UUID, exc: BaseException) -> None:
        """The job's step raised what nobody expected (a bug, a lost file, input that slipped
        past validation): the job ends now with `internal_error`, hold released or charge
        refunded, and is stopped at the provider, instead of being sent again until its
        deadline."""
        kind = type(exc).__name__
        with self.runtime.db.transaction() as session:
            failed = jobs.fail_on_error(session=session, job_id=job_id, kind=kind)
            if failed is not None and failed.provider_request_id:
                self.send(session, names.CANCEL_AT_PROVIDER, str(job_id))
        log.error("job %s failed on an unexpected %s in %s", job_id, kind, self.name)

    def claimed(self, job: Job | None) -> Job | None:
        """Bind the claimed job's ids to the task's log lines; pass the job through."""
        if job is not None:
            logs.bind(account_id=job.account_id, provider_request_id=job.provider_request_id)
        return job

    def send(self, session: Session, task: str, *args: str, countdown: float = 0) -> None:
        names.send_after_commit(session, self.app, task, *args, countdown=countdown)

    def free_slot(self, session: Session, job: Job) -> None:
        """The job left the provider: if it held a slot of the fair scheduler, hand it to the
        next waiting job now rather than at the dispatcher's next tick."""
        if job.capacity_limited:
            self.send(session, names.ADMIT_JOBS, job.provider)

    def parks(self, wait: float) -> bool:
        """Whether a poll due in `wait` seconds is parked: beyond the countdown horizon, it
        gets no message; the dispatcher sends it when it is nearly due (nothing held in a
        worker or in Redis meanwhile)."""
        return wait > self.runtime.settings.poll_horizon_seconds

    def poll_token_for(self, wait: float) -> str | None:
        """A fresh token for a poll message due in `wait` seconds, or None if it is parked."""
        return None if self.parks(wait) else jobs.new_poll_token()

    def send_poll(self, session: Session, job_id: str, token: str | None, wait: float) -> None:
        """Send the job's next poll after the commit, unless it is parked (no token)."""
        if token is not None:
            self.send(session, names.POLL_JOB, job_id, token, countdown=wait)

    def apply_early_callback(self, request_id: str) -> None:
        """Apply a provider callback that came before the request id was recorded (the API
        kept it). Only with webhooks on: polling alone pays nothing for it."""
        if not self.runtime.provider.webhooks_enabled:
            return
        with self.runtime.db.transaction() as session:
            outcome, job = jobs.apply_early_callback(session=session, request_id=request_id)
            names.send_callback_follow_up(session, self.app, outcome, job)

    def gives_up_on_result(self, job_id: uuid.UUID, reason: str) -> bool:
        """The provider finished but its result did not come (5xx, unreachable): retried for
        `RESULT_RETRY_SECONDS` from the first failure, then the job fails, hold released.
        True when polling stops (given up, or the job moved on)."""
        retry_for = timedelta(seconds=self.runtime.settings.result_retry_seconds)
        with self.runtime.db.transaction() as session:
            job = jobs.record_result_unfetched(session=session, job_id=job_id)
            if job is None:
                return True
            if not machine.gives_up_fetching_result(job, now=utcnow(), retry_for=retry_for):
                return False
            jobs.fail(session=session, job_id=job_id, failure=machine.result_unfetched(reason))
        return True

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
            provider = self.runtime.provider.name
            metrics.child(metrics.PROVIDER_CALLS, provider, operation, outcome).inc()

    def poll_wait(
        self,
        job: Job,
        model: VideoModel,
        *,
        queue_position: int | None = None,
        measured: float | None = None,
    ) -> float:
        """The wait before the job's next status call (see shared/jobs/pacing.py); `measured`:
        the render's expected seconds, if the caller has read them already."""
        now = utcnow()
        expected = pacing_seconds(
            measured or self.measured_seconds(job, model),
            catalog_seconds=catalog.get_model(job.model).estimated_seconds,
            settings=self.runtime.settings,
        )
        return poll_wait(
            self.runtime.settings,
            expected_seconds=expected,
            elapsed_seconds=(now - (job.started_at or now)).total_seconds(),
            polls_past_expected=max(0, job.poll_count - 1),
            queue_position=queue_position,
            webhooks_enabled=self.runtime.provider.webhooks_enabled,
        )

    def measured_seconds(self, job: Job, model: VideoModel) -> float | None:
        """How long the job's render should take, by the provider's word or recent renders of
        the model (read at most once a minute per process); None if nothing says yet."""
        says = self.runtime.provider.render_seconds(model, provider_arguments(model, job.input))

        def read() -> list[float]:
            with self.runtime.db.transaction() as session:
                return jobs.recent_render_seconds(session=session, model=job.model)

        recent = recent_renders(job.model, read) if says is None else []
        return measured_render_seconds(provider_says=says, recent=recent)


@shared_task(
    base=DbTask,
    bind=True,
    name=names.SUBMIT_JOB,
    max_retries=None,
    **DB_OUTAGE_RETRY,
    **time_limits(machine.SUBMIT_BUDGET),
)
def submit_job(self: DbTask, job_id: str) -> None:
    """The one provider call that is not idempotent: the attempt is recorded before it."""
    key = uuid.UUID(job_id)
    with self.runtime.db.statement() as connection:
        job = self.claimed(jobs.claim_submit(connection=connection, job_id=key))
    if job is None:
        return  # another delivery of this message has it, or the job moved on
    model = catalog.get_model(job.model)
    try:
        request_id = self.call_provider(
            "submit", self.runtime.provider.submit, model, provider_arguments(model, job.input)
        )
    except ProviderUnavailable as exc:
        retry_for = timedelta(seconds=self.runtime.settings.submit_retry_seconds)
        with self.runtime.db.transaction() as session:
            if machine.gives_up_submitting(job, now=utcnow(), retry_for=retry_for):
                jobs.fail(session=session, job_id=key, failure=Failure("provider_error", str(exc)))
                return
            countdown = self.backoff(self.request.retries)
            jobs.forget_submit_attempt(session=session, job_id=key, retry_in=countdown)
        raise self.retry(countdown=countdown, exc=exc) from exc
    except SubmitOutcomeUnknown as exc:
        # The attempt stays recorded: the dispatcher fails and releases the job once it is
        # stale, rather than risk a second render the account would pay for.
        log.error("job %s: submit outcome unknown, left to the dispatcher: %s", job_id, exc)
        return
    except ProviderError as exc:
        with self.runtime.db.transaction() as session:
            jobs.fail(session=session, job_id=key, failure=Failure(exc.code, str(exc)))
            self.free_slot(session, job)
        return
    logs.bind(provider_request_id=request_id)
    measured = self.measured_seconds(job, model)
    wait = self.poll_wait(job, model, measured=measured)
    token = self.poll_token_for(wait)
    with self.runtime.db.transaction() as session:
        submitted = jobs.record_submitted(
            session=session,
            job_id=key,
            request_id=request_id,
            poll_token=token,
            poll_in=wait,
            expected_seconds=estimated_seconds(measured, estimate=job.estimated_seconds),
        )
        if submitted is not None:  # its "job is now submitted" line carries the request id
            self.send_poll(session, job_id, token, wait)
    if submitted is not None:
        self.apply_early_callback(request_id)
        return
    # Cancelled while the provider call was in flight: stop the render we just started.
    self.call_provider("cancel", self.runtime.provider.cancel, model, request_id)


@shared_task(
    base=DbTask,
    bind=True,
    name=names.SETTLE_CREDITS,
    max_retries=10,
    **DB_OUTAGE_RETRY,
    **time_limits(SHORT_TIME_LIMIT),
)
def settle_credits(self: DbTask, job_id: str) -> None:
    """Charge the delivered job, then (after the commit: the charge is recorded before any
    ingest) send its ingestion."""
    with self.runtime.db.transaction() as session:
        if self.claimed(jobs.settle(session=session, job_id=uuid.UUID(job_id))):
            self.send(session, names.INGEST_MEDIA, job_id)


@shared_task(
    base=DbTask,
    bind=True,
    name=names.INGEST_MEDIA,
    max_retries=machine.INGEST_ATTEMPTS - 1,
    **DB_OUTAGE_RETRY,
    **time_limits(INGEST_TIME_LIMIT),
)
def ingest_media(self: DbTask, job_id: str) -> None:
    """Copy the video into the library; after the last attempt the job fails, refunded."""
    key = uuid.UUID(job_id)
    with self.runtime.db.statement() as connection:
        job = self.claimed(jobs.claim_ingest(connection=connection, job_id=key))
    if job is None:
        return
    try:
        video = _ingest(self.runtime, job)
    except IngestError as exc:
        final = machine.ingest_gives_up(self.request.retries)
        metrics.INGEST_FAILURES.labels(str(final).lower()).inc()
        if not final:
            countdown = self.backoff(self.request.retries)
            with self.runtime.db.transaction() as session:
                jobs.retry_ingest(session=session, job_id=key, retry_in=countdown)
            raise self.retry(countdown=countdown, exc=exc) from exc
        with self.runtime.db.transaction() as session:
            jobs.fail_ingest(session=session, job_id=key, reason=str(exc))
        log.error("ALERT job %s failed: its video could not be ingested: %s", job_id, exc)
        return
    with self.runtime.db.transaction() as session:
        asset_id = library.record_generated_video(session=session, job=job, video=video)
        jobs.complete(session=session, job=job, media_asset_id=asset_id, file_size=video.size_bytes)


def _ingest(runtime: Runtime, job: Job) -> IngestedVideo:
    """The job's video into the library; a download cut by the soft time limit (its overall
    deadline) is an ingest error like any other, retried with backoff."""
    try:
        return ingest_video(
            storage=runtime.storage,
            url=(job.provider_result or {}).get("video", {}).get("url", ""),
            account_id=job.account_id,
            job_id=job.id,
            local_root=runtime.settings.simulator_root,
        )
    except SoftTimeLimitExceeded as exc:
        limit = INGEST_TIME_LIMIT.total_seconds()
        raise IngestError(f"the video was not stored within {limit:.0f} s") from exc


@shared_task(
    base=DbTask,
    bind=True,
    name=names.CANCEL_AT_PROVIDER,
    max_retries=5,
    **time_limits(SHORT_TIME_LIMIT),
)
def cancel_at_provider(self: DbTask, job_id: str) -> None:
    """Ask the provider to stop the job's render. A job that failed here (its deadline) ends
    as it is, whatever the provider says; one still at the provider (a customer's cancel)
    is polled at once, so it ends on what really happened without waiting for its render."""
    with self.runtime.db.transaction() as session:
        job = self.claimed(session.get(Job, uuid.UUID(job_id)))
    if job is None or not job.provider_request_id:
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
    token = jobs.new_poll_token()
    with self.runtime.db.transaction() as session:
        if jobs.poll_now(session=session, job_id=job.id, token=token) is not None:
            self.send(session, names.POLL_JOB, job_id, token)


@shared_task(
    bind=True,
    name=names.ADMIT_JOBS,
    max_retries=3,
    **DB_OUTAGE_RETRY,
    **time_limits(SHORT_TIME_LIMIT),
)
def admit_jobs(self: Task, provider: str) -> None:
    """Give the provider's free slots to waiting jobs, in the fair order (not a step of one
    job: a duplicate or a lost message is harmless, every dispatcher tick runs the same
    round)."""
    admit_waiting(runtime_for(self.app.naive_settings), self.app, provider, now=utcnow())


@shared_task(base=DbTask, bind=True, name=names.DISPATCH, **time_limits(SHORT_TIME_LIMIT))
def dispatch_due(self: DbTask) -> None:
    """Beat: send every step that is overdue (see services/worker/dispatcher.py)."""
    dispatch(self.runtime, self.app, now=utcnow())


@shared_task(base=DbTask, bind=True, name=names.REFRESH_CATALOG, **time_limits(CATALOG_TIME_LIMIT))
def refresh_catalog(self: DbTask) -> None:
    """Beat: fetch listings and prices; on failure the last good ones stay in force."""
    try:
        with self.runtime.db.transaction() as session:
            count = catalog_sync.refresh(session=session, settings=self.runtime.settings)
    except catalog_sync.CatalogUnavailable as exc:
        log.warning("catalog refresh failed: %s", exc)
        return
    log.info("catalog refreshed: %d models priced by the platform", count)
