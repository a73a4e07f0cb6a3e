"""The sweeper (beat): drives on every job that stopped moving, from its stored state.

Losing every message in the broker loses no job: a job that has not moved for
`STALE_AFTER_SECONDS` gets its next message again, and a job past its deadline is
failed and released. Each revival is a conditional update on the job's `updated_at`,
so two sweepers, or a sweep racing a slow task, revive a job at most once; no lock is
needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from celery import Celery
from sqlalchemy.orm import Session

from services.worker import celery_app as names
from shared import jobs
from shared.db import after_commit
from shared.models import Job
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def run_sweep(runtime: Runtime, celery: Celery, *, now: datetime) -> int:
    """One pass; returns how many jobs it acted on."""
    acted = 0
    with runtime.db.transaction() as session:
        overdue = jobs.overdue_jobs(session=session, now=now)
    for job in overdue:
        with runtime.db.transaction() as session:
            if jobs.fail(
                session=session,
                job_id=job.id,
                code="timeout",
                message="The job did not finish before its deadline.",
            ):
                acted += 1
                if job.provider_request_id:
                    after_commit(session, _sender(celery, names.CANCEL_AT_PROVIDER, job))
    with runtime.db.transaction() as session:
        stale = jobs.stale_jobs(
            session=session, now=now, stale_after_seconds=runtime.settings.stale_after_seconds
        )
    for job in stale:
        with runtime.db.transaction() as session:
            acted += _revive(session, celery, job)
    return acted


def _sender(celery: Celery, task_name: str, job: Job, *extra: str) -> Callable[[], object]:
    return lambda: celery.send_task(task_name, args=(str(job.id), *extra))


def _revive(session: Session, celery: Celery, job: Job) -> int:
    job_id = str(job.id)
    if job.status == "queued" and job.submit_attempted_at is not None:
        # The worker stopped between recording the attempt and the provider's answer: we
        # cannot tell whether the provider took it, so fail and release rather than pay twice.
        failed = jobs.fail(
            session=session,
            job_id=job.id,
            code="provider_error",
            message="The submission's outcome is unknown (the worker stopped mid-call).",
            expected=["queued"],
        )
        return int(failed)
    if job.status in jobs.ACTIVE_AT_PROVIDER:
        token = jobs.new_poll_token()
        if not jobs.revive(session=session, job=job, poll_token=token):
            return 0
        after_commit(session, _sender(celery, names.POLL_JOB, job, token))
    elif not jobs.revive(session=session, job=job):
        return 0
    elif job.status == "queued":
        after_commit(session, _sender(celery, names.SUBMIT_JOB, job))
    elif job.status == "settling":
        after_commit(session, lambda: names.settle_and_ingest(celery, job_id).apply_async())
    elif job.status == "ingesting":
        after_commit(session, _sender(celery, names.INGEST_MEDIA, job))
    log.info("sweeper revived job %s in state %s", job_id, job.status)
    return 1
