"""The dispatcher (beat, every `DISPATCH_INTERVAL_SECONDS`): sends every step that is overdue.

PostgreSQL records when each unfinished job's next step is due (`jobs.due_at`, written in
the same statement as every state change; the step itself follows from the state).
Celery messages with their countdowns are the fast path. The dispatcher claims the jobs
due more than `DISPATCH_GRACE_SECONDS` ago, in batches, with `FOR UPDATE SKIP LOCKED` (two
dispatchers never take the same job), and carries out `machine.step_for` for each: it
sends the step's message again (so a message lost with a worker, a FLUSHALL or a Redis
restart costs seconds), fails a job past its deadline, or fails a submit whose outcome is
unknown. Polls go out in batches (`poll_batch`: one message for up to `POLL_BATCH_SIZE`
jobs, one claim and one write for them all): the overdue ones at once, and the parked
ones (waits beyond `POLL_HORIZON_SECONDS`, which no message carries) due within that
horizon, grouped by due time, each batch with the countdown to its last due time; and
fans the new job events out to customer webhook deliveries and sends those that are due
(`dispatch_webhooks`); and runs a round of the fair scheduler for every provider some job
waits for (`admit_waiting`: a slot freed by a cancel, or a lost message, costs a tick).
The rules are the state machine's and the scheduler's; this module only applies them.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy.orm import Session

from services.worker import celery_app as names
from shared import metrics
from shared.jobs import admission, machine
from shared.jobs import service as jobs
from shared.jobs.machine import Step
from shared.jobs.models import Job
from shared.jobs.status import JobStatus
from shared.runtime import Runtime
from shared.webhooks import deliveries

log = logging.getLogger(__name__)

BATCH = 500


def dispatch(runtime: Runtime, celery: Celery, *, now: datetime) -> int:
    """Carry out every step due by `now` less the grace, then send the parked polls due
    within the horizon, then the customer webhook deliveries due; returns how many jobs it
    acted on."""
    settings = runtime.settings
    cutoff = now - timedelta(seconds=settings.dispatch_grace_seconds)
    acted = 0
    while True:
        token = jobs.new_poll_token()
        with runtime.db.transaction() as session:
            claimed = jobs.claim_due(
                session=session, now=now, cutoff=cutoff, limit=BATCH, poll_token=token
            )
            polls: list[uuid.UUID] = []
            for job in claimed:
                acted += _carry_out(session, celery, job, now=now, polls=polls)
            # A revived poll loop carries the new token: a late message of the old one exits.
            overdue = [(job_id, 0.0) for job_id in polls]
            names.send_poll_batches(session, celery, token, overdue, size=settings.poll_batch_size)
        if len(claimed) < BATCH:
            break
    until = now + timedelta(seconds=settings.poll_horizon_seconds)
    while True:
        token = jobs.new_poll_token()
        with runtime.db.transaction() as session:
            parked = jobs.claim_parked(session=session, until=until, limit=BATCH, poll_token=token)
            due = [(job_id, (due_at - now).total_seconds()) for job_id, due_at in parked]
            names.send_poll_batches(session, celery, token, due, size=settings.poll_batch_size)
        acted += len(parked)
        if len(parked) < BATCH:
            break
    with runtime.db.transaction() as session:
        waited_for = admission.providers_with_waiting(session=session)
    for provider in waited_for:
        acted += admit_waiting(runtime, celery, provider, now=now)
    dispatch_webhooks(runtime, celery, now=now)
    return acted


def admit_waiting(runtime: Runtime, celery: Celery, provider: str, *, now: datetime) -> int:
    """Give the provider's free slots to waiting jobs in the fair order and send their
    submits; returns how many were admitted."""
    with runtime.db.transaction() as session:
        admitted = admission.admit(
            session=session, settings=runtime.settings, provider=provider, now=now
        )
        for job_id in admitted:
            names.send_after_commit(session, celery, names.SUBMIT_JOB, str(job_id))
    if admitted:
        log.info("admitted %d waiting jobs at %s", len(admitted), provider)
    return len(admitted)


def dispatch_webhooks(runtime: Runtime, celery: Celery, *, now: datetime) -> None:
    """Write the deliveries of every job event not yet taken, then send every delivery that
    is due and first of its job's pending ones."""
    links = deliveries.media_links(runtime.settings, runtime.storage)
    while True:
        with runtime.db.transaction() as session:
            taken = deliveries.fan_out(session=session, now=now, links=links, limit=BATCH)
        if taken < BATCH:
            break
    while True:
        with runtime.db.transaction() as session:
            due = deliveries.claim_due(session=session, now=now, limit=BATCH)
            names.send_webhook_deliveries(session, celery, due)
        if len(due) < BATCH:
            return


def _carry_out(
    session: Session, celery: Celery, job: Job, *, now: datetime, polls: list[uuid.UUID]
) -> int:
    """Carry out the job's step (its poll is added to `polls`, sent in batches by the
    caller); returns 1 if it acted."""
    step = machine.step_for(job, now=now)
    if step is None:
        return 0
    metrics.DISPATCHED.labels(step.value).inc()
    job_id = str(job.id)
    if step is Step.FAIL_TIMEOUT:
        failed = jobs.fail(session=session, job_id=job.id, failure=machine.TIMED_OUT)
        if failed is not None and failed.provider_request_id:
            names.send_after_commit(session, celery, names.CANCEL_AT_PROVIDER, job_id)
        return int(failed is not None)
    if step is Step.FAIL_INGEST:
        reason = f"not stored within {machine.INGEST_DEADLINE} of the provider's delivery"
        if not jobs.fail_ingest(session=session, job_id=job.id, reason=reason):
            return 0
        log.error("ALERT job %s failed: its video could not be ingested: %s", job_id, reason)
        return 1
    if step is Step.FAIL_UNKNOWN_SUBMIT:
        failed = jobs.fail(
            session=session,
            job_id=job.id,
            failure=machine.SUBMIT_OUTCOME_UNKNOWN,
            expected=[JobStatus.QUEUED],
        )
        return int(failed is not None)
    if step is Step.POLL:
        polls.append(job.id)
    else:
        names.send_after_commit(session, celery, names.STEP_TASKS[step], job_id)
    log.info("dispatcher sent %s for job %s (%s)", step.value, job_id, job.status)
    return 1
