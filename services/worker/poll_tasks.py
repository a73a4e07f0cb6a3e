"""The poll step: ask the provider about jobs at the provider, store what it says, and
poll again later or hand on.

    poll_job(job_id, token)      one job: its status, and its result once the render is done
    poll_batch(token, job_ids)   up to POLL_BATCH_SIZE jobs in one message: their statuses

Either is one claim (`UPDATE … RETURNING`, fenced by the poll token), a provider call per
job, and one write for every report that changes nothing a customer sees; a report that
does, and the rare endings (delivered → settlement, failed, cancelled, timed out), are
written one by one by the service's transitions, with their events and ledger entries.
The next poll is a message sent after that write commits (batches for a batch's jobs,
a single poll for a single poll's job), or none: a poll due beyond the horizon is parked,
and the dispatcher sends the parked polls, and the overdue ones, in batches.

Batches exist because most of a poll's cost was per message and per transaction
(Celery's execution of the task, its acknowledgement, the next message's publish, the
claim's and the report's round trips), not the provider call: a batch pays those once
for up to a hundred jobs. Two rules keep a batch's time bounded by its status calls:
- it fetches no results: a job it finds done goes on to `poll_job` at once (one more
  status call, once per job), since fetching a result may render the simulator's video,
  or be retried under fal's result rules (`RESULT_RETRY_SECONDS`);
- it asks the provider for at most `machine.POLL_BATCH_ASKING` (on a small thread pool
  for a remote provider: `VideoProvider.parallel_calls`); a job not answered by then is
  polled again after its usual wait, as when the provider is unavailable.

At least once: a batch delivered twice, run in parallel, or stopped half way claims each
job at most once (the token); a job it claimed and did not report is due again
`POLL_BUDGET` after the claim, and the dispatcher sends it in its next batch. Every rule
is the state machine's, the pacing's or the service's; this module only applies them.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from celery import shared_task

from services.worker import celery_app as names
from services.worker.tasks import (
    DB_OUTAGE_RETRY,
    SHORT_TIME_LIMIT,
    TRANSIENT,
    DbTask,
    time_limits,
)
from shared import catalog
from shared.db import utcnow
from shared.jobs import machine
from shared.jobs import service as jobs
from shared.jobs.models import Job
from shared.jobs.service import PollReport
from shared.providers.base import (
    ProviderError,
    ProviderResult,
    ProviderStatus,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)

# A poll may render the simulator's video on its first result, hence more than its budget.
POLL_TIME_LIMIT = timedelta(seconds=60)
# A batch asks for `POLL_BATCH_ASKING` at most, then writes: well within this.
POLL_BATCH_TIME_LIMIT = SHORT_TIME_LIMIT


@shared_task(
    base=DbTask,
    bind=True,
    name=names.POLL_JOB,
    max_retries=None,
    **DB_OUTAGE_RETRY,
    **time_limits(POLL_TIME_LIMIT),
)
def poll_job(self: DbTask, job_id: str, token: str) -> None:
    """One job's poll: its status, and its result once the render is done."""
    poll(self, token, [uuid.UUID(job_id)], batch=False)


@shared_task(
    base=DbTask,
    bind=True,
    name=names.POLL_BATCH,
    max_retries=None,
    per_job=False,
    **DB_OUTAGE_RETRY,
    **time_limits(POLL_BATCH_TIME_LIMIT),
)
def poll_batch(self: DbTask, token: str, job_ids: list[str]) -> None:
    """The polls of many jobs in one message: their statuses."""
    poll(self, token, [uuid.UUID(job_id) for job_id in job_ids], batch=True)


@dataclass
class Answer:
    """What the provider said of one job: its status (and result), or the call's error."""

    job: Job
    status: ProviderStatus | None = None
    result: ProviderResult | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class NextPoll:
    """A job's report and its next poll, `wait` seconds from now; `single`: sent as its own
    `poll_job` (a job a batch found done: its result is fetched there)."""

    job: Job
    status: ProviderStatus | None
    wait: float
    single: bool = False


def poll(task: DbTask, token: str, job_ids: Sequence[uuid.UUID], *, batch: bool) -> None:
    """Claim the jobs, ask the provider about each, write what it said, send what follows.
    A job whose step raises what nobody expected ends at once; the others go on."""
    claimed = _claim(task, token, job_ids)
    if not claimed:
        return  # duplicates or fenced-out messages: another loop owns these jobs
    if not batch:
        task.claimed(claimed[0])
    answers = _ask_all(task, claimed) if batch else [_ask(task, claimed[0], results=True)]
    following: list[NextPoll] = []
    for answer in answers:
        try:
            step = _follow(task, answer)
        except TRANSIENT:
            raise
        except Exception as exc:
            log.exception("poll of job %s", answer.job.id)
            task.fail_unexpectedly(answer.job.id, exc)
            continue
        if step is not None:
            following.append(step)
    if following:
        _report(task, following, batch=batch)


def _claim(task: DbTask, token: str, job_ids: Sequence[uuid.UUID]) -> list[Job]:
    """The jobs this message may poll; those past their deadline fail here (and are stopped
    at the provider) instead. The claim is one statement; the failures, if any, follow in a
    transaction of their own (one that never comes leaves its job claimed, due again
    `POLL_BUDGET` later and still overdue)."""
    now = utcnow()
    with task.runtime.db.statement() as connection:
        claimed = jobs.claim_polls(
            connection=connection, job_ids=job_ids, token=token, new_token=jobs.new_poll_token()
        )
    overdue = [job for job in claimed if machine.is_overdue(job, now)]
    if overdue:
        with task.runtime.db.transaction() as session:
            for job in overdue:
                if jobs.fail(session=session, job_id=job.id, failure=machine.TIMED_OUT):
                    task.send(session, names.CANCEL_AT_PROVIDER, str(job.id))
    return [job for job in claimed if job not in overdue]


def _ask(task: DbTask, job: Job, *, results: bool) -> Answer:
    """The job's status from the provider, and with `results` its result once it is done."""
    answer = Answer(job)
    provider = task.runtime.provider
    model = catalog.get_model(job.model)
    request_id = job.provider_request_id or ""
    try:
        answer.status = task.call_provider("status", provider.status, model, request_id)
        if results and answer.status.state == "completed":
            answer.result = task.call_provider("result", provider.result, model, request_id)
    except TRANSIENT:
        raise
    except Exception as exc:  # a refusal, an outage, or what nobody expected: `_follow`
        answer.error = exc
    return answer


def _ask_all(task: DbTask, claimed: list[Job]) -> list[Answer]:
    """Every claimed job's status, asked within `POLL_BATCH_ASKING`: one after another in
    this thread, or on the thread pool for a provider that allows parallel calls."""
    asking = machine.POLL_BATCH_ASKING.total_seconds()
    deadline = time.monotonic() + asking
    unanswered = ProviderUnavailable(f"no answer within {asking:.0f} s")
    parallel = task.runtime.provider.parallel_calls
    if parallel <= 1:
        return [
            _ask(task, job, results=False)
            if time.monotonic() < deadline
            else Answer(job, error=unanswered)
            for job in claimed
        ]
    futures = [_pool(parallel).submit(_ask, task, job, results=False) for job in claimed]
    done, late = concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    for future in late:
        future.cancel()  # not started yet; one already running ends by its call's deadline
    return [
        future.result() if future in done else Answer(job, error=unanswered)
        for future, job in zip(futures, claimed, strict=True)
    ]


@functools.cache
def _pool(size: int) -> concurrent.futures.ThreadPoolExecutor:
    """This process's pool for parallel status calls (made on first use, in the pool's
    child process, never in the worker's main process before it forks)."""
    return concurrent.futures.ThreadPoolExecutor(size, thread_name_prefix="poll")


def _follow(task: DbTask, answer: Answer) -> NextPoll | None:
    """What the answer calls for: an ending (written here, one by one), or a report and the
    next poll (written together by `_report`); raises an unexpected error of the call."""
    job, status, error = answer.job, answer.status, answer.error
    model = catalog.get_model(job.model)
    if isinstance(error, ProviderUnavailable):
        if status is not None and task.gives_up_on_result(job.id, str(error)):
            return None
        log.warning("job %s: provider unavailable, polling again later: %s", job.id, error)
        return NextPoll(job, None, task.poll_wait(job, model))
    if isinstance(error, ProviderError):
        _ended(task, job, error.code, str(error))
        return None
    if error is not None:
        raise error
    if answer.result is not None:
        with task.runtime.db.transaction() as session:
            if jobs.record_delivered(session=session, job_id=job.id, result=answer.result):
                task.send(session, names.SETTLE_CREDITS, str(job.id))
                task.free_slot(session, job)
        return None
    assert status is not None  # the call raised nothing, so it answered
    if status.state == "failed":
        _ended(task, job, status.error_code, status.error)
        return None
    if status.state == "completed":  # found done by a batch: `poll_job` fetches the result
        return NextPoll(job, None, 0.0, single=True)
    log.debug(
        "job %s: provider status %s",
        job.id,
        status.state,
        extra={"progress": status.progress, "queue_position": status.queue_position},
    )
    return NextPoll(job, status, task.poll_wait(job, model, queue_position=status.queue_position))


def _ended(task: DbTask, job: Job, code: str, message: str | None) -> None:
    """The request ended at the provider without a video: failed, or cancelled if asked."""
    with task.runtime.db.transaction() as session:
        jobs.record_provider_failure(session=session, job=job, code=code, message=message)
        task.free_slot(session, job)


def _report(task: DbTask, following: list[NextPoll], *, batch: bool) -> None:
    """Write every report in one transaction, then send the next polls due within the
    horizon: a batch's as batches again (one new token for them all), a single poll's, and
    a job a batch found done, as `poll_job`. The rest are parked."""
    batch_token = jobs.new_poll_token()
    reports: list[PollReport] = []
    batched: list[tuple[uuid.UUID, float]] = []
    singles: list[tuple[uuid.UUID, str, float]] = []
    for step in following:
        token: str | None = None  # parked: no message
        if not task.parks(step.wait):
            if batch and not step.single:
                token = batch_token
                batched.append((step.job.id, step.wait))
            else:
                token = jobs.new_poll_token()
                singles.append((step.job.id, token, step.wait))
        reports.append(PollReport(step.job, step.status, step.wait, token))
    with task.runtime.db.transaction() as session:
        jobs.record_reports(session=session, reports=reports)
        for job_id, token, wait in singles:
            task.send(session, names.POLL_JOB, str(job_id), token, countdown=wait)
        names.send_poll_batches(
            session,
            task.app,
            batch_token,
            batched,
            size=task.runtime.settings.poll_batch_size,
        )
