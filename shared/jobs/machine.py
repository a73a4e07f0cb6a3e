"""Every rule about a job, as pure functions of the job and the clock (no database).

Which transitions exist, when a job is overdue, what to do next for each state, when
submitting is given up, what a provider's answer means, and what happens when ingestion
fails for good. The service applies these rules with conditional updates; the tasks, the
dispatcher and the routes ask them and hold no rule of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from shared.jobs.status import ACTIVE_AT_PROVIDER, CANCELLABLE, JobStatus

S = JobStatus
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.SUBMITTED, S.FAILED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.RUNNING, S.SETTLING, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SETTLING, S.FAILED, S.CANCELLED}),
    # Failed from settling (before the charge) or ingesting (refunded): the video could
    # not be copied into the library for good, or a step raised an unexpected error.
    S.SETTLING: frozenset({S.INGESTING, S.FAILED}),
    S.INGESTING: frozenset({S.COMPLETED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Ingestion is retried this many times in all, with backoff, before the job fails.
INGEST_ATTEMPTS = 6

# How long a claimed step may run before the dispatcher takes the job back: a provider
# call (submit, status) or a download into the library. A step that outlives its budget
# may run twice; the claims (the submit attempt, the poll token) and the idempotent ingest
# make that harmless, and a submit that outlives its budget counts as an unknown outcome.
SUBMIT_BUDGET = timedelta(seconds=30)
POLL_BUDGET = timedelta(seconds=10)
# A batch of polls (one message, many jobs) asks the provider for at most this long after
# its claim; a job whose status has not come by then is treated as if the provider were
# unavailable (polled again after its usual wait), so the batch writes every report
# within the `POLL_BUDGET` its claim took, before the dispatcher would send them again.
POLL_BATCH_ASKING = timedelta(seconds=8)
INGEST_BUDGET = timedelta(seconds=60)  # also the ingest's lease: one runs at a time per job
# A paid-for job is never timed out, but a video that could not be stored this long after
# the provider delivered it never will be (its URL expires within about an hour): the job
# fails, refunded.
INGEST_DEADLINE = timedelta(minutes=15)
# A step the dispatcher sent, whose message is lost again, is sent again after this.
REDISPATCH_AFTER = timedelta(seconds=30)
# A provider callback kept for a request id no job has recorded yet is dropped after this
# (the id never came: a submit whose outcome was unknown, say).
EARLY_CALLBACK_TTL = timedelta(hours=1)


class IllegalTransition(ValueError):
    """A programming error: code asked for a move the state machine does not have."""


def check_transition(sources: tuple[JobStatus, ...], target: JobStatus) -> None:
    illegal = [source for source in sources if target not in TRANSITIONS[source]]
    if illegal:
        raise IllegalTransition(f"no transition from {illegal} to {target}")


@dataclass(frozen=True)
class Failure:
    """The error a job ends with: its public code and a message."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


TIMED_OUT = Failure("timeout", "The job did not finish before its deadline.")
# The worker stopped between recording the attempt and the provider's answer: we cannot
# tell whether the provider took it, so fail and release rather than pay twice.
SUBMIT_OUTCOME_UNKNOWN = Failure(
    "provider_error", "The submission's outcome is unknown (the worker stopped mid-call)."
)


def internal_error(kind: str) -> Failure:
    """A step raised what nobody expected (`kind`: the exception's type, never its text,
    which may carry secrets): the job ends at once rather than at its deadline."""
    return Failure("internal_error", f"The job stopped on an unexpected error ({kind}).")


def ingest_failed(reason: str) -> Failure:
    return Failure("ingest_failed", f"The video could not be stored in the library: {reason}")


class Step(StrEnum):
    """What must happen to a job next."""

    SUBMIT = "submit"
    POLL = "poll"
    SETTLE = "settle"  # which sends ingest once the charge is committed
    INGEST = "ingest"
    FAIL_TIMEOUT = "fail_timeout"
    FAIL_INGEST = "fail_ingest"
    FAIL_UNKNOWN_SUBMIT = "fail_unknown_submit"


class JobState(Protocol):
    """The fields of a job the rules read (a `Job` row satisfies it)."""

    @property
    def status(self) -> JobStatus: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def deadline_at(self) -> datetime: ...
    @property
    def provider_completed_at(self) -> datetime | None: ...
    @property
    def submit_attempted_at(self) -> datetime | None: ...
    @property
    def cancel_requested_at(self) -> datetime | None: ...
    @property
    def result_unfetched_since(self) -> datetime | None: ...


def is_overdue(job: JobState, now: datetime) -> bool:
    """Past its deadline before the provider delivered: the job fails and is released."""
    return job.status in CANCELLABLE and now >= job.deadline_at


def step_for(job: JobState, *, now: datetime) -> Step | None:
    """The step that moves the job on from its state (None once it is final): past its
    deadline it fails; a submit attempt still unanswered when due is an unknown outcome; a
    video still not stored `INGEST_DEADLINE` after delivery fails, refunded."""
    if job.status.is_terminal:
        return None
    if is_overdue(job, now):
        return Step.FAIL_TIMEOUT
    if job.status is JobStatus.QUEUED:
        return Step.FAIL_UNKNOWN_SUBMIT if job.submit_attempted_at else Step.SUBMIT
    if job.status in ACTIVE_AT_PROVIDER:
        return Step.POLL
    if job.status is JobStatus.SETTLING:
        return Step.SETTLE
    return Step.FAIL_INGEST if ingest_overdue(job, now) else Step.INGEST


def ingest_overdue(job: JobState, now: datetime) -> bool:
    """Still not in the library `INGEST_DEADLINE` after the provider delivered it."""
    delivered = job.provider_completed_at
    return (
        job.status is JobStatus.INGESTING
        and delivered is not None
        and now >= delivered + INGEST_DEADLINE
    )


def gives_up_submitting(job: JobState, *, now: datetime, retry_for: timedelta) -> bool:
    """A provider that keeps answering 429/5xx: stop retrying the submit at this point."""
    return now >= min(job.created_at + retry_for, job.deadline_at)


def gives_up_fetching_result(job: JobState, *, now: datetime, retry_for: timedelta) -> bool:
    """A provider that reported the request complete but keeps failing to hand over its
    result (5xx, unreachable): stop retrying `retry_for` after the first failure. (Left
    alone it would be retried until the job's deadline, then end as `timeout`.)"""
    since = job.result_unfetched_since
    return since is not None and now >= since + retry_for


def result_unfetched(reason: str) -> Failure:
    return Failure(
        "provider_error",
        f"The provider finished the request but its result could not be fetched ({reason}).",
    )


def ending_at_provider(job: JobState, error_code: str) -> JobStatus:
    """A request that ended without a video: cancelled if that was asked for, else failed."""
    if error_code == "cancelled" or job.cancel_requested_at is not None:
        return JobStatus.CANCELLED
    return JobStatus.FAILED


def status_for_report(provider_state: str) -> JobStatus | None:
    """The status a provider's progress report moves an active job to (None: unchanged)."""
    return JobStatus.RUNNING if provider_state == "running" else None


def ingest_gives_up(attempt: int) -> bool:
    """Attempt numbers start at 0; the last one fails the job (and refunds its charge)."""
    return attempt >= INGEST_ATTEMPTS - 1
