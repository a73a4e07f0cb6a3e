"""The sweeper (beat): carries out `machine.next_step` for every job that stopped moving.

Losing every message in the broker loses no job: a job that has not moved for
`STALE_AFTER_SECONDS` gets its next message again, and a job past its deadline is
failed and released. Each revival is a conditional update on the job's `updated_at`,
so two sweepers, or a sweep racing a slow task, revive a job at most once; no lock is
needed. The rules are the state machine's; this module only applies them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy.orm import Session

from services.worker import celery_app as names
from shared.jobs import machine
from shared.jobs import service as jobs
from shared.jobs.machine import Step
from shared.jobs.models import Job
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def run_sweep(runtime: Runtime, celery: Celery, *, now: datetime) -> int:
    """One pass; returns how many jobs it acted on."""
    stale_after = timedelta(seconds=runtime.settings.stale_after_seconds)
    with runtime.db.transaction() as session:
        candidates = jobs.jobs_to_drive(session=session, now=now, stale_after=stale_after)
    acted = 0
    for job in candidates:
        step = machine.next_step(job, now=now, stale_after=stale_after)
        if step is None:
            continue
        with runtime.db.transaction() as session:
            acted += _carry_out(session, celery, job, step)
    return acted


def _carry_out(session: Session, celery: Celery, job: Job, step: Step) -> int:
    job_id = str(job.id)
    if step is Step.FAIL_TIMEOUT:
        failed = jobs.fail(session=session, job_id=job.id, failure=machine.TIMED_OUT)
        if failed is not None and failed.provider_request_id:
            names.send_after_commit(session, celery, names.CANCEL_AT_PROVIDER, job_id)
        return int(failed is not None)
    if step is Step.FAIL_UNKNOWN_SUBMIT:
        failed = jobs.fail(
            session=session,
            job_id=job.id,
            failure=machine.SUBMIT_OUTCOME_UNKNOWN,
            expected=[job.status],
        )
        return int(failed is not None)
    # A revived poll loop gets a new fencing token: a late message of the old loop exits.
    token = jobs.new_poll_token() if step is Step.POLL else None
    fence = {"poll_token": token} if token else {}
    if jobs.revive(session=session, job=job, **fence) is None:
        return 0
    names.send_after_commit(session, celery, names.STEP_TASKS[step], job_id, *fence.values())
    log.info("sweeper revived job %s in state %s", job_id, job.status)
    return 1
